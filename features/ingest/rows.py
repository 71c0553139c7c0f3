"""The shapes rows travel in between reading and normalisation: parsed records, columns, unreadable rows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass
class ColumnRows:
    """Parsed rows held column-wise, as the fast readers produce them.

    `frame` has one column per canonical field, except that `properties` already holds the stored JSON
    text (the source's `properties` merged with any non-canonical keys). `raw(positions)` gives the raw
    text of rows by position, only ever asked for quarantined rows. `problems` holds a reason per row
    found while reading (None where fine).
    """

    frame: pd.DataFrame
    lines: np.ndarray
    raw: Callable[[np.ndarray], list[str]]
    problems: np.ndarray | None = None


@dataclass
class RawRows:
    """Rows as read: parsed records, rows parsed column-wise, and rows that could not even be parsed.

    `records` (dicts, aligned with `lines` and `raw_text`) is what the collector and the CSV reader hand
    over; `columns` is what the JSONL and Parquet readers produce for speed. Line numbers order all rows.
    """

    records: list[dict]
    lines: list[int]
    raw_text: list[str]
    unreadable: list[tuple[int, str, str]]  # (line, raw text, reason)
    columns: ColumnRows | None = None

    @property
    def rows_read(self) -> int:
        """Every row lands in exactly one of the three parts."""
        parsed = 0 if self.columns is None else len(self.columns.lines)
        return len(self.records) + parsed + len(self.unreadable)
