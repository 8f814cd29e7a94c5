"""A result table as a log of row operations: how the lab store takes concurrent writers without losing rows.

A table is its base file followed by its parts, applied in name order. Each is one Parquet file
whose schema metadata says what it does to the table built so far:

    replace   its rows replace every row whose ``key`` column holds one of ``keys`` (other rows stay)
    all       its rows are the whole table (a base file without the tag is one)

Replacing is idempotent: applying a part twice, or on top of a base that already holds it, gives
the same table. So a base rewritten from the parts it saw never hides a part it missed.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

OP_METADATA = b"diffusion-lab/table-op"


@dataclass(frozen=True)
class TableOp:
    """One write: ``rows`` replace the rows whose ``key`` is in ``keys``, or (key None) the whole table."""

    rows: pd.DataFrame
    key: str | None = None
    keys: tuple[Any, ...] = ()

    def apply(self, table: pd.DataFrame | None) -> pd.DataFrame:
        """The table after this operation (``table`` None: no table yet)."""
        if self.key is None or table is None:
            return self.rows
        if self.key not in table.columns:  # a table written before it had the key column: replaced whole
            return self.rows
        kept = table[~table[self.key].isin(list(self.keys))]
        if self.rows.empty and not len(self.rows.columns):
            return kept.reset_index(drop=True)
        return pd.concat([kept, self.rows], ignore_index=True)


def replace_op(rows: pd.DataFrame, key: str, keys: Sequence[Any] | None = None) -> TableOp:
    """Rows that replace those of the same ``key`` values (``keys``: by default the values ``rows`` hold)."""
    if key not in rows.columns and (keys is None or not rows.empty):
        raise ValueError(f"rows have no {key!r} column to replace by; columns: {list(rows.columns)}")
    if keys is None:
        keys = rows[key].unique().tolist()
    elif not rows.empty and not set(rows[key].unique().tolist()) <= set(keys):
        raise ValueError(f"rows hold {key} values outside keys {list(keys)}")
    return TableOp(rows.reset_index(drop=True), key, tuple(keys))


def op_to_bytes(op: TableOp) -> bytes:
    """Parquet bytes of ``op``'s rows, the operation in the schema metadata."""
    table = pa.Table.from_pandas(op.rows, preserve_index=False)
    tag = json.dumps({"key": op.key, "keys": list(op.keys)}).encode()
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), OP_METADATA: tag})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def op_from_bytes(data: bytes) -> TableOp:
    """The operation stored by ``op_to_bytes`` (a file without the tag holds a whole table).

    Raises pyarrow's ArrowInvalid, OSError or ValueError on a damaged file.
    """
    table = pq.read_table(io.BytesIO(data))
    tag = (table.schema.metadata or {}).get(OP_METADATA)
    rows = table.to_pandas()
    if tag is None:
        return TableOp(rows)
    body = json.loads(tag)
    return TableOp(rows, body["key"], tuple(body["keys"]))


def fold(ops: Sequence[TableOp]) -> pd.DataFrame | None:
    """The table the operations build, in order; None if there are none."""
    table = None
    for op in ops:
        table = op.apply(table)
    return table


def part_name(suffix: str = ".parquet") -> str:
    """A new part's file name: the writer's clock in ns (the order parts apply in), then a random id."""
    return f"{time.time_ns():020d}-{uuid.uuid4().hex}{suffix}"
