"""Deduplication keys of events: (channel, event_id), or a hash of the normalised content."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.ingest.normalise import combined_chunks
from features.schema import CANONICAL_FIELDS

_HASHED_FIELDS = [f for f in CANONICAL_FIELDS if f not in ("event_id", "name", "ts")]


def event_keys(events: pa.Table, con: duckdb.DuckDBPyConnection | None = None) -> pa.Array:
    """`event_keys` on Arrow columns: the key text is built column-wise and hashed (SHA-1) by DuckDB,
    on `con` when given (a new in-memory database costs ~20 ms, too much for a collector batch).

    Keys are the first 32 hex digits of SHA-1 over `id␟channel␟event_id`, or without an `event_id` over
    `c␟ts (ns)␟` and the hashed fields (numbers as Python writes them, missing as empty).
    """
    has_id = combined_chunks(events["event_id"].is_valid()).to_numpy(zero_copy_only=False)
    separator = pa.scalar("\x1f", pa.large_string())
    text = pc.binary_join_element_wise(
        pa.scalar("id", pa.large_string()), events["channel"].fill_null(""), events["event_id"].fill_null(""),
        separator)
    if not has_id.all():
        # Content text only for the rows that need it: most sources send ids.
        rows = events.take(pa.array(np.flatnonzero(~has_id)))
        parts = [pa.scalar("c", pa.large_string()), pc.cast(pc.cast(rows["ts"], pa.int64()), pa.large_string())]
        for name in _HASHED_FIELDS:
            column = rows[name]
            parts.append((_float_text(column) if pa.types.is_floating(column.type) else column).fill_null(""))
        content = pc.binary_join_element_wise(*parts, separator)
        text = pc.replace_with_mask(combined_chunks(text), pa.array(~has_id), combined_chunks(content))
    own = con is None
    con = duckdb.connect() if own else con
    con.register("_ingest_key_text", pa.table({"text": text}))
    try:
        # A projection keeps row order (DuckDB's preserve_insertion_order is on by default).
        return con.sql("SELECT substr(sha1(text), 1, 32) AS key FROM _ingest_key_text").to_arrow_table()["key"]
    finally:
        con.unregister("_ingest_key_text")
        if own:
            con.close()


def _float_text(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Floats as Python writes them (`1200000.0`, `1e+20`), once per distinct value."""
    values = column.to_numpy(zero_copy_only=False)
    codes, uniques = pd.factorize(values)
    texts = np.array([None, *(str(float(u)) for u in uniques)], dtype=object)[codes + 1]
    return pa.array(texts, pa.large_string())
