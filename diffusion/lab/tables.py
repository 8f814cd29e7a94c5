"""The lab store's result tables: one declared schema per table, and the store that writes, updates and reads them.

Every table the code writes is declared here (``SCORES``, ``TRIALS``, ``TRIAL_HISTORY``,
``EMBEDDING_TRIALS``, ``EMBEDDING_HISTORY``, ``ROBUSTNESS``, ``ROBUSTNESS_SUMMARY``): its name, the job that rewrites it, its columns (name,
kind of values, whether a value may be missing, whether the column may be absent) and the key
column that row updates replace by. Readers name columns through the schema (``SCORES.ratio``),
never as string literals: a column is a ``str``, so ``frame[SCORES.ratio]`` works as before.

What a writer can rely on, on top of the store's atomic files (``diffusion.lab.store``):

- ``write`` and ``update`` refuse a frame that does not match its table's schema (missing or
  undeclared columns, values of another kind), naming the table, the columns and the accepted
  ones; ``read`` refuses a stored table that does not match (damaged or foreign) the same way.
- ``update(schema, rows)`` replaces the rows whose key (e.g. ``model``) ``rows`` holds and keeps
  every other row: no writer loses another's rows. Local paths: a lock file per table
  (filelock) serialises the read-modify-write. Object stores (pyarrow has no conditional put):
  each update is a new part file; ``read`` applies the base file, then the parts in name order
  (see ``diffusion.lab.table_log``). When two writers replace rows of the same key, the later
  part, by its writer's clock, wins. Parts older than COMPACT_AFTER_S are folded into one
  snapshot part by a later writer; the guarantee needs writers' clocks to agree within that.
  ``write`` replaces a whole table: the last writer wins.
- A damaged file raises DamagedFile naming it and the job that rewrites it; that job's next
  write sets the damaged file aside (``<file>.damaged-<ns>``) instead of failing again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Self

import numpy as np
import pandas as pd
import pyarrow as pa

from diffusion.lab.store import DamagedFile, LabStore, LabStoreError, check_name
from diffusion.lab.table_log import TableOp, fold, op_from_bytes, op_to_bytes, part_name, replace_op

log = logging.getLogger(__name__)

TABLES_FOLDER = "tables"
COMPACT_AFTER_S = 600.0  # parts older than this may be folded into a snapshot (object stores)
COMPACT_MIN_PARTS = 16  # ... once at least this many of them have piled up

ColumnKind = Literal["string", "integer", "float", "bool", "any"]
_INFERRED: dict[str, tuple[str, ...]] = {  # pandas' infer_dtype names each kind accepts
    "string": ("string", "empty"),
    "integer": ("integer", "empty"),
    "float": ("floating", "integer", "mixed-integer-float", "decimal", "empty"),
    "bool": ("boolean", "empty"),
}


class Column(str):
    """A declared column: the string is its name; ``kind`` what its values are.

    ``nullable``: a value may be missing (None/NaN; a float column holds NaN for a missing value,
    so it always may). ``optional``: the column may be absent from a frame.
    """

    kind: ColumnKind
    nullable: bool
    optional: bool

    def __new__(cls, name: str, kind: ColumnKind, nullable: bool = False, optional: bool = False) -> Self:
        if kind not in (*_INFERRED, "any"):
            raise ValueError(f"column {name!r}: kind {kind!r} is not one of {', '.join((*_INFERRED, 'any'))}")
        column = super().__new__(cls, name)
        column.kind, column.nullable, column.optional = kind, nullable or optional, optional
        return column

    def __reduce__(self) -> tuple[Any, ...]:
        return (Column, (str(self), self.kind, self.nullable, self.optional))

    def describe(self) -> str:
        """``name (kind)``, with ``, nullable`` / ``, optional`` where they apply."""
        flags = "".join([", optional" if self.optional else "", ", nullable" if self.nullable and not self.optional else ""])
        return f"{self} ({self.kind}{flags})"

    def problem(self, values: pd.Series) -> str | None:
        """Why ``values`` cannot be this column, or None."""
        present = values.dropna()
        if len(present) < len(values) and not self.nullable and self.kind not in ("float", "any"):
            return f"column {str(self)!r} has missing values (declared {self.kind}, not nullable)"
        if self.kind == "any":
            return None
        inferred = pd.api.types.infer_dtype(present, skipna=True)
        if inferred in _INFERRED[self.kind]:
            return None
        if self.kind == "integer" and inferred in ("floating", "mixed-integer-float") \
                and bool(np.all(np.mod(present.astype(float), 1) == 0)):
            return None  # whole numbers held as floats because some value is missing
        return f"column {str(self)!r} holds {inferred} values ({values.dtype}), declared {self.kind}"


class TableSchemaError(LabStoreError, ValueError):
    """A frame that does not match its table's schema; the message names the table and the columns."""


@dataclass(frozen=True)
class TableSchema:
    """A result table: its name, the command that rewrites it, its columns and the key row updates replace by.

    ``prefixes``: columns whose name starts with one of them are accepted with any values (the
    trials' config columns ``model.*``, ``train.*``, ...). ``renamed``: earlier names of columns
    (old -> current), so a table written before a rename still reads. Columns are attributes:
    ``SCORES.ratio``.
    """

    name: str
    job: str
    columns: tuple[Column, ...]
    key: str | None = None
    prefixes: tuple[str, ...] = ()
    renamed: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        check_name(self.name, "table name")
        names = [str(c) for c in self.columns]
        shadowed = [n for n in names if hasattr(type(self), n) or n in ("name", "job", "columns", "key", "prefixes",
                                                                         "renamed")]
        if len(set(names)) != len(names) or shadowed:
            raise ValueError(f"table {self.name!r}: duplicate columns, or columns named like a schema attribute {shadowed}")
        if self.key is not None and self.key not in names:
            raise ValueError(f"table {self.name!r}: key {self.key!r} is not one of its columns")

    def __getattr__(self, name: str) -> Column:
        for column in self.__dict__.get("columns", ()):
            if column == name:
                return column
        raise AttributeError(f"table {self.__dict__.get('name')!r} has no column {name!r}")

    def accepted(self) -> str:
        """The accepted columns, as the errors list them."""
        return ", ".join([c.describe() for c in self.columns] + [f"{p}* (any)" for p in self.prefixes])

    def problems(self, frame: pd.DataFrame) -> list[str]:
        """What does not match in ``frame`` (empty: it matches). A frame with no columns and no rows matches."""
        if frame.empty and not len(frame.columns):
            return []
        declared = {str(c): c for c in self.columns}
        present = [str(c) for c in frame.columns]
        missing = [name for name, c in declared.items() if not c.optional and name not in present]
        undeclared = [n for n in present if n not in declared and not n.startswith(self.prefixes or ("\0",))]
        problems = [f"missing columns {missing}"] if missing else []
        problems += [f"undeclared columns {undeclared}"] if undeclared else []
        for name in present:
            problem = declared[name].problem(frame[name]) if name in declared else None
            problems += [problem] if problem else []
        return problems

    def check(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` if it matches the schema; TableSchemaError naming the table, what is wrong and the accepted columns."""
        problems = self.problems(frame)
        if problems:
            raise TableSchemaError(f"table {self.name!r} does not match its schema: {'; '.join(problems)}. "
                                   f"Accepted columns: {self.accepted()}")
        return frame

    def empty(self) -> pd.DataFrame:
        """A table with the declared columns (the optional ones too) and no rows."""
        return pd.DataFrame(columns=[str(c) for c in self.columns])


SCORES = TableSchema("scores", "python -m jobs.evaluate", key="model", columns=(
    Column("model", "string"), Column("arch", "string"), Column("sampler", "string"), Column("steps", "integer"),
    Column("eta", "float"), Column("embedding", "string"), Column("n", "integer"), Column("fd", "float"),
    Column("mean_term", "float"), Column("trace_term", "float"), Column("floor_mean", "float"),
    Column("floor_std", "float"), Column("ratio", "float"), Column("kid_mean", "float"), Column("kid_std", "float"),
    Column("seconds_per_image", "float"), Column("images_per_s", "float"), Column("parameters", "integer"),
    Column("weights_sha256", "string"), Column("train_seconds", "float"),
    Column("images_seen", "integer", nullable=True), Column("device", "string"),
    Column("embedding_sha256", "string", optional=True), Column("embedding_trial", "string", optional=True),
    Column("fd_std", "float", optional=True), Column("ratio_low", "float", optional=True),
    Column("ratio_high", "float", optional=True),
    *(Column(f"{prefix}{figure}", "float", optional=True)
      for prefix in ("", "real_") for figure in ("precision", "recall", "density", "coverage")),
))
"""One row per (model, sampler setting, embedding): FD next to its floor at the same N, the ratio's 95% interval
(``ratio_low``, ``ratio_high``; ``diffusion.metrics.uncertainty``), KID, precision, recall, density and coverage with
their real-vs-real values at the same N (``real_precision``, ...; ``diffusion.metrics.manifold``), speed, and the
embedding's weights it was measured in (``embedding_sha256``, ``embedding_trial``). The optional columns are absent in
tables written before them."""

TRIALS = TableSchema("trials", "python -m jobs.sweep", key="model", prefixes=("model.", "diffusion.", "train."), columns=(
    Column("model", "string"), Column("trial_id", "string"), Column("status", "string"), Column("error", "string"),
    Column("final_loss", "float"), Column("final_fd", "float"), Column("best_fd", "float"),
    Column("best_step", "integer", nullable=True), Column("floor_mean", "float"),
    Column("images_seen", "integer", nullable=True), Column("time_total_s", "float"),
    Column("node_id", "string", nullable=True), Column("device", "string", nullable=True),
    Column("checkpoint", "string", nullable=True), Column("trial_path", "string"),
    Column("is_best", "bool", optional=True), Column("fd_embedding", "string", nullable=True, optional=True),
    Column("steps_reached", "integer", nullable=True, optional=True),
    Column("planned_steps", "integer", nullable=True, optional=True),
), renamed=(("fd_floor", "floor_mean"),))
"""One row per sweep trial: its config (``model.*``, ``diffusion.*``, ``train.*``), status (``completed``, ``stopped by
ASHA``, ``stopped by the budget-matched rung``, ``stopped early``, ``error``) with the steps it reached of those it
planned, final and best FD."""

TRIAL_HISTORY = TableSchema("trial_history", "python -m jobs.sweep", key="model", columns=(
    Column("model", "string"), Column("trial_id", "string"),
    Column("step", "integer", optional=True), Column("images_seen", "integer", optional=True),
    Column("loss", "float", optional=True), Column("fd", "float", optional=True),
    Column("ratio", "float", optional=True), Column("ratio_low", "float", optional=True),
    Column("ratio_high", "float", optional=True), Column("resumed", "bool", optional=True),
    Column("time_total_s", "float", optional=True), Column("timestamp", "integer", optional=True),
    Column("node_id", "string", optional=True), Column("device", "string", optional=True),
), renamed=(("fd_ratio", "ratio"), ("fd_ratio_low", "ratio_low"), ("fd_ratio_high", "ratio_high")))
"""One row per trial report: the loss, and the FD where the report scored one, with its ratio to the floor and that
ratio's 95% interval (``diffusion.metrics.uncertainty``)."""

EMBEDDING_TRIALS = TableSchema("embedding_trials", "python -m jobs.sweep (its embeddings stage)", key="kind",
                               prefixes=("model.", "train."), columns=(
    Column("kind", "string"), Column("trial_id", "string"), Column("status", "string"), Column("error", "string"),
    Column("final_loss", "float"), Column("final_val_loss", "float"), Column("best_val_loss", "float"),
    Column("best_step", "integer", nullable=True), Column("val_neg_elbo", "float", optional=True),
    Column("val_accuracy", "float", optional=True),
    Column("images_seen", "integer", nullable=True), Column("time_total_s", "float"),
    Column("node_id", "string", nullable=True), Column("device", "string", nullable=True),
    Column("checkpoint", "string", nullable=True), Column("trial_path", "string"),
    Column("is_best", "bool", optional=True),
    Column("steps_reached", "integer", nullable=True, optional=True),
    Column("planned_steps", "integer", nullable=True, optional=True),
))
"""One row per embedding trial (VAE, classifier): its config, status, final and best validation loss (the selection figure)."""

EMBEDDING_HISTORY = TableSchema("embedding_history", EMBEDDING_TRIALS.job, key="kind", columns=(
    Column("kind", "string"), Column("trial_id", "string"),
    *(Column(name, kind, optional=True) for name, kind in (
        ("step", "integer"), ("images_seen", "integer"), ("loss", "float"), ("val_loss", "float"),
        ("val_neg_elbo", "float"), ("val_reconstruction", "float"), ("val_kl", "float"), ("val_accuracy", "float"),
        ("resumed", "bool"), ("time_total_s", "float"), ("timestamp", "integer"), ("node_id", "string"),
        ("device", "string"))),
))
"""One row per embedding trial report: the training loss and the validation figures."""

ROBUSTNESS = TableSchema("robustness", "python -m jobs.evaluate (or python -m diffusion robustness)", columns=(
    Column("corruption", "string"), Column("severity", "float"), Column("embedding", "string"),
    Column("seed", "integer"), Column("n", "integer"), Column("fd", "float"), Column("mean_term", "float"),
    Column("trace_term", "float"), Column("floor_mean", "float"), Column("ratio", "float"),
    Column("embedding_sha256", "string", optional=True), Column("embedding_trial", "string", optional=True),
))
"""One row per (corruption, severity, embedding, seed): FD of corrupted real digits, and its ratio to the floor."""

ROBUSTNESS_SUMMARY = TableSchema("robustness_summary", ROBUSTNESS.job, columns=(
    Column("corruption", "string"), Column("embedding", "string"), Column("floor_mean", "float"),
    Column("floor_std", "float"), Column("monotonicity", "float"), Column("detection_threshold", "float"),
    Column("max_ratio", "float"),
    Column("embedding_sha256", "string", optional=True), Column("embedding_trial", "string", optional=True),
))
"""One row per (corruption, embedding): the floor, monotonicity and detection threshold of its curve."""

TABLES: dict[str, TableSchema] = {t.name: t for t in (SCORES, TRIALS, TRIAL_HISTORY, EMBEDDING_TRIALS, EMBEDDING_HISTORY,
                                                      ROBUSTNESS, ROBUSTNESS_SUMMARY)}
"""Every declared table, by name."""


class TableStore:
    """The result tables of one lab store: whole writes, row updates by key, checked reads."""

    def __init__(self, store: LabStore) -> None:
        self.store = store

    def __repr__(self) -> str:
        return f"TableStore({self.store.root!r})"

    @property
    def location(self) -> str:
        """The URI of the tables' folder (what the jobs print)."""
        return self.store.uri(TABLES_FOLDER)

    def path(self, table: TableSchema) -> str:
        """Relative path of a table's Parquet file (on object stores: the merged view of its parts)."""
        return f"{TABLES_FOLDER}/{check_name(table.name, 'table name')}.parquet"

    def parts_path(self, table: TableSchema) -> str:
        """Relative path of a table's folder of row updates (object stores)."""
        return f"{TABLES_FOLDER}/{check_name(table.name, 'table name')}.parts"

    def write(self, table: TableSchema, frame: pd.DataFrame) -> None:
        """Replace a whole table (the last writer wins); TableSchemaError if ``frame`` does not match the schema."""
        self._commit(table, TableOp(table.check(frame).reset_index(drop=True)))

    def update(self, table: TableSchema, rows: pd.DataFrame, keys: Sequence[Any] | None = None) -> None:
        """Replace the rows whose key is in ``keys`` (default: the values ``rows`` hold) by ``rows``; keep the others.

        Concurrent writers lose nothing (see the module docstring). ``keys`` may name values
        ``rows`` lacks: their old rows are dropped. TableSchemaError if ``rows`` do not match the schema.
        """
        if table.key is None:
            raise TableSchemaError(f"table {table.name!r} has no key column: it is written whole ({table.job})")
        op = replace_op(rows, table.key, keys)
        self._commit(table, TableOp(table.check(op.rows), op.key, op.keys))

    def read(self, table: TableSchema) -> pd.DataFrame:
        """A stored table; DamagedFile (naming the file and the job that rewrites it) if unreadable or not of its schema."""
        frame = fold([op for _, op in self._ops(table, set_aside_damaged=False)])
        if frame is None:
            raise LabStoreError(f"{self.store.uri(self.path(table))} does not exist")
        if frame.empty and not len(frame.columns):
            return table.empty()
        problems = table.problems(frame)
        if problems:
            raise DamagedFile(f"{self.store.uri(self.path(table))} is not a {table.name} table as this code writes it "
                              f"({'; '.join(problems)}; accepted columns: {table.accepted()}); "
                              f"rerun {table.job} to rewrite it")
        return frame

    def names(self) -> list[str]:
        """Names of the stored tables."""
        names = self.store.list_dir(TABLES_FOLDER)
        return sorted({n.rsplit(".", 1)[0] for n in names if n.endswith((".parquet", ".parts"))})

    def _part_paths(self, table: TableSchema) -> list[str]:
        folder = self.parts_path(table)
        return [f"{folder}/{n}" for n in self.store.list_dir(folder) if n.endswith(".parquet")]

    def _ops(self, table: TableSchema, set_aside_damaged: bool) -> list[tuple[str, TableOp]]:
        base = self.path(table)
        try:
            paths = ([base] if self.store.exists(base) else []) + self._part_paths(table)
        except (OSError, LabStoreError) as error:
            raise LabStoreError(f"cannot read {self.store.uri(base)}: {error}") from error
        ops = []
        for relpath, data in zip(paths, self.store.read_many(paths, missing_ok=True)):
            if data is None:  # removed after the listing by another writer: set aside, or folded into a snapshot
                continue
            try:
                op = op_from_bytes(data)
                ops.append((relpath, TableOp(op.rows.rename(columns=dict(table.renamed)), op.key, op.keys)))
            except (pa.ArrowException, OSError, ValueError, KeyError, TypeError) as error:  # ArrowInvalid is a ValueError
                damaged = DamagedFile(f"{self.store.uri(relpath)} is damaged ({error}); rerun {table.job} to rewrite it")
                if not set_aside_damaged:
                    raise damaged from error
                self._set_aside(relpath, damaged)
        return ops

    def _set_aside(self, relpath: str, damaged: DamagedFile) -> None:
        aside = f"{relpath}.damaged-{time.time_ns()}"
        try:
            self.store.move(relpath, aside)
        except LabStoreError as error:
            if not self.store.exists(relpath):
                return  # another writer set it aside (or replaced it) first
            raise damaged from error
        log.warning("%s; moved to %s and written anew", damaged, self.store.uri(aside))

    def _commit(self, table: TableSchema, op: TableOp) -> None:
        if self.store.is_local:
            with self.store.locked(TABLES_FOLDER, check_name(table.name, "table name")):
                ops = self._ops(table, set_aside_damaged=True) if op.key is not None else []
                frame = op.apply(fold([o for _, o in ops]))
                self.store.write_bytes(self.path(table), op_to_bytes(TableOp(frame)))
                for relpath in self._part_paths(table):  # parts, if any, are in the base now
                    self.store.delete(relpath)
            return
        self.store.write_bytes(f"{self.parts_path(table)}/{part_name()}", op_to_bytes(op))
        ops = self._ops(table, set_aside_damaged=True)
        frame = fold([o for _, o in ops])
        self.store.write_bytes(self.path(table), op_to_bytes(TableOp(frame)))  # the merged view, for plain readers
        self._compact(table, ops)

    def _compact(self, table: TableSchema, ops: list[tuple[str, TableOp]]) -> None:
        horizon = time.time_ns() - int(COMPACT_AFTER_S * 1e9)
        stamps = {p: p.rsplit("/", 1)[1][:20] for p, _ in ops if p != self.path(table)}
        old = [(p, o) for p, o in ops if stamps.get(p, "x").isdigit() and int(stamps[p]) < horizon]
        if len(old) < COMPACT_MIN_PARTS:
            return
        last = [p for p, _ in ops].index(old[-1][0])
        through = old[-1][0].removesuffix(".parquet")
        snapshot = fold([o for _, o in ops[: last + 1]])  # the base and the parts up to ``through``, in order
        assert snapshot is not None
        self.store.write_bytes(f"{through}~snapshot.parquet", op_to_bytes(TableOp(snapshot)))
        for relpath, _ in old:
            self.store.delete(relpath)
