"""Import canonical event files into the event store, accounting for every row.

Each row read ends in exactly one of three places: accepted (stored), duplicate (its `event_key` is
already stored or appears earlier in the same file) or quarantined (with the raw row, the source and a
reason). `rows_read == accepted + duplicates + quarantined` holds for every input: bytes that are not
UTF-8 (quarantined line by line, never decoded by guessing), a JSON value that is not an object, a CSV row
with the wrong cell count, NUL bytes, fields of megabytes. Blank lines are not rows. Only a file that
cannot be read as its format at all (missing, unknown extension, not Parquet) raises `IngestError`, before
anything is stored.

A file is imported in one DuckDB transaction, so an import killed half-way leaves nothing behind, and
because events are keyed deterministically the re-run stores exactly what one clean import would.
Source files are only read, never modified.

Speed comes from never touching a row in Python when it can be avoided: JSON Lines are parsed by DuckDB's
JSON functions when a line is plain (an object with canonical keys, each once, whose values are text,
integers or null, anything inside `properties`), and every other line goes through Python's `json`, the
reference, row by row. Both routes give the same values for the same line, so the route only changes the
speed. Normalisation then works on whole Arrow columns (Python only once per distinct value, where at
all), event keys are hashed by DuckDB, and new events are inserted with one statement."""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.ingest.normalise import (
    VALUE_FIELDS,
    is_missing,
    properties_text,
    true_mask,
)
from features.ingest.rows import ColumnRows, RawRows
from features.schema import CANONICAL_FIELDS
from features.store import quiet

_BLANK = " \t\n\r\x0b\x0c"  # what `bytes.strip()` removes: a line of only these is not a row


class IngestError(RuntimeError):
    """A whole file cannot be imported (missing, unknown format); row problems are quarantined instead."""




def read_jsonl(path: Path) -> RawRows:
    """One JSON object per line; plain lines are parsed by DuckDB, the rest by Python's `json`."""
    numbers, lines, unreadable = _text_lines(Path(path).read_bytes())
    out = RawRows([], [], [], unreadable)
    plain, frame = _parse_plain_lines(lines)
    frame["properties"], properties_ok = _properties_from_json(frame["properties"])
    if not properties_ok.all():
        plain, frame = plain[properties_ok], frame[properties_ok].reset_index(drop=True)
    other = np.ones(len(lines), dtype=bool)
    other[plain] = False
    for position, text in zip(np.flatnonzero(other), lines.filter(pa.array(other)).to_pylist()):
        if not text.strip(_BLANK):
            continue  # a blank line is not a row
        record, reason = _parse_json_line(text)
        if reason:
            out.unreadable.append((int(numbers[position]), text.rstrip("\r\n"), reason))
        else:
            out.records.append(record)
            out.lines.append(int(numbers[position]))
            out.raw_text.append(text.rstrip("\r\n"))
    if len(plain):
        out.columns = ColumnRows(frame, numbers[plain], lambda at: [
            text.rstrip("\r\n") for text in lines.take(pa.array(plain[at])).to_pylist()])
    return out


def _text_lines(data: bytes) -> tuple[np.ndarray, pa.Array, list[tuple[int, str, str]]]:
    """The file's lines as text with their 1-based numbers, and the lines that are not valid UTF-8.

    Lines end at `\\n` and keep it (JSON ignores it; quarantine strips it); a UTF-8 byte order mark
    opening the file is skipped. The lines are an Arrow view over the file's bytes, found with one numpy
    pass and validated as UTF-8 at once; only a file with broken bytes is decoded line by line, so that
    each broken line is quarantined on its own instead of guessing an encoding for the whole file.
    """
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == ord("\n")) + 1
    offsets = np.concatenate([[start], ends[ends > start], [] if data.endswith(b"\n") else [len(data)]])
    offsets = offsets.astype(np.int64)
    numbers = np.arange(1, len(offsets))
    lines = pa.LargeStringArray.from_buffers(len(numbers), pa.py_buffer(offsets), pa.py_buffer(data))
    try:
        lines.validate(full=True)
        return numbers, lines, []
    except pa.ArrowInvalid:
        pass
    decoded, keep, unreadable = [], np.ones(len(numbers), dtype=bool), []
    for i, raw in enumerate(lines.view(pa.large_binary()).to_pylist()):
        try:
            decoded.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            keep[i] = False
            unreadable.append((int(numbers[i]), raw.decode("utf-8", "replace").rstrip("\r\n"), "not valid UTF-8"))
    return numbers[keep], pa.array(decoded, pa.large_string()), unreadable


# Lines DuckDB accepts but Python's `json` rejects because of a trailing comma always take the Python
# route (a match inside a string only costs speed). DuckDB's other leniency, `nan`/`inf` literals, makes
# a canonical value a DOUBLE (not plain) and is caught in `properties` by `_properties_from_json`.
_TRAILING_COMMA = r",[ \t\r\n]*[\]}]"
# Value types a plain line may hold outside `properties`: DuckDB's text of an integer is what Python
# makes of it (`str(int)`), while floats, booleans, lists and objects need Python's reading.
_PLAIN_TYPES = r"^(?:(?:VARCHAR|UBIGINT|BIGINT|NULL)(?:,|$))*$"


def _parse_plain_lines(lines: pa.Array) -> tuple[np.ndarray, pd.DataFrame]:
    """Positions of the plain lines and their fields as text columns, parsed by DuckDB in C++.

    Plain: valid JSON, an object, only canonical keys and none twice, and only text, integers or nulls
    outside `properties` (which comes back as JSON text for `_properties_from_json`). The key count
    checks keys and repeats at once: it must equal the canonical fields found (`json_type` sees the
    first of repeated keys only). Each JSON function parses the line again, so each appears once.
    Should DuckDB fail on some input, every line takes the Python route.
    """
    struct = ", ".join(f'"{f}": "VARCHAR"' for f in VALUE_FIELDS)
    paths = ", ".join(f"'$.\"{f}\"'" for f in VALUE_FIELDS)
    query = f"""
        SELECT pos, fields, keys, regexp_full_match(types, '{_PLAIN_TYPES}') AS plain_types,
               length(types) - length(replace(types, ',', '')) + (types <> '')::INTEGER AS found
        FROM (
            SELECT pos, from_json(line, '{{{struct}, "properties": "JSON"}}') AS fields,
                   len(json_keys(line)) AS keys, array_to_string(json_type(line, [{paths}]), ',') AS types
            FROM lines
            WHERE json_valid(line) AND NOT regexp_matches(line, '{_TRAILING_COMMA}')
        )
    """
    con = quiet(duckdb.connect())
    try:
        con.register("lines", pa.table({"pos": np.arange(len(lines)), "line": lines}))
        table = con.sql(query).to_arrow_table()
    except duckdb.Error:
        return np.zeros(0, dtype=np.int64), pd.DataFrame({f: [] for f in CANONICAL_FIELDS}, dtype=object)
    finally:
        con.close()
    fields = table.column("fields")
    found = table.column("found").to_numpy() + true_mask(pc.struct_field(fields, "properties").is_valid())
    keys = table.column("keys").to_numpy()
    plain = (keys > 0) & (keys == found) & true_mask(table.column("plain_types"))
    if not plain.all():
        table = table.filter(pa.array(plain))
        fields = table.column("fields")
    frame = pd.DataFrame({name: pc.struct_field(fields, name).to_pandas() for name in CANONICAL_FIELDS})
    return table.column("pos").to_numpy(), frame


def _properties_from_json(texts: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Stored `properties` text for JSON-text values, computed once per distinct value.

    Returns the texts and which rows succeeded; a value Python does not read back the same way (nested
    too deeply, `NaN`) sends its line to the Python route, which decides on the original line.
    """
    codes, uniques = pd.factorize(texts)
    merged = np.full(len(uniques), None, dtype=object)
    ok = np.ones(len(uniques), dtype=bool)
    for i, text in enumerate(uniques):
        try:
            merged[i], problem = properties_text(json.loads(text, parse_constant=_no_constant), {})
        except (ValueError, RecursionError):
            ok[i] = False
            continue
        ok[i] = problem is None
    out = np.full(len(texts), None, dtype=object)
    present = codes >= 0
    out[present] = merged[codes[present]]
    fine = np.ones(len(texts), dtype=bool)
    fine[present] = ok[codes[present]]
    return pd.Series(out, dtype=object), fine


def _no_constant(name: str) -> float:
    """Refuse `NaN`/`Infinity` in DuckDB's copy of `properties`: it also accepts spellings Python's `json`
    rejects (`nan`, `inf`), so such a line needs Python's own reading of the original."""
    raise ValueError(name)


def _parse_json_line(text: str) -> tuple[dict | None, str | None]:
    """The reference reading of one line: Python's `json`, and the reason when it is not an object."""
    try:
        value = json.loads(text)
    except RecursionError:
        return None, "not valid JSON (nested too deeply)"
    except ValueError:
        return None, "not valid JSON"
    if not isinstance(value, dict):
        return None, "not a JSON object"
    return value, None


def read_csv(path: Path) -> RawRows:
    """A header row naming canonical fields, then one event per row; cells are text.

    Bytes that are not UTF-8 are kept (as surrogate escapes) so the CSV structure survives, and each row
    holding some is quarantined as "not valid UTF-8". A header that is unreadable quarantines every row.
    """
    data = Path(path).read_bytes()
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        text, broken_bytes = data.decode("utf-8"), False
    except UnicodeDecodeError:
        text, broken_bytes = data.decode("utf-8", "surrogateescape"), True
    out = RawRows([], [], [], [])
    rows = (row for row in _csv_rows(text) if row[2] is None or any(c.strip() for c in row[2]))
    header = next(rows, None)
    if header is None:
        return out
    _, header_raw, header_cells, header_error = header
    names = [h.strip() for h in header_cells or []]
    repeated = sorted({n for n in names if names.count(n) > 1})
    header_problem = (
        f"CSV header unreadable: {header_error}" if header_error
        else "CSV header is not valid UTF-8" if broken_bytes and _has_bad_bytes(header_raw)
        else f"CSV header repeats a column: {repeated[0]}" if repeated
        else None
    )
    for line, raw, cells, error in rows:
        bad_bytes = broken_bytes and _has_bad_bytes(raw)
        shown = (raw.encode("utf-8", "surrogateescape").decode("utf-8", "replace") if bad_bytes else raw)
        shown = shown.rstrip("\r\n")
        reason = (
            header_problem
            or (_csv_error_reason(error) if error else None)
            or ("not valid UTF-8" if bad_bytes else None)
            or (f"{len(cells)} cells for {len(names)} columns" if len(cells) != len(names) else None)
        )
        if reason:
            out.unreadable.append((line, shown, reason))
            continue
        out.records.append({k: v for k, v in zip(names, cells) if v != ""})
        out.lines.append(line)
        out.raw_text.append(shown)
    return out


def _csv_rows(text: str) -> Iterator[tuple[int, str, list[str] | None, str | None]]:
    """(first line, raw text, cells or None, csv error or None) per CSV row, a bad row never stopping the rest.

    The raw text is the lines the parser consumed for the row, so quarantine shows the row as written.
    A `csv.Error` (a field over the csv module's limit, a stray quote in strict places) costs that row only.
    """
    consumed: list[str] = []

    def feed() -> Iterator[str]:
        for line in io.StringIO(text, newline=""):
            consumed.append(line)
            yield line

    reader = csv.reader(feed())
    first = 1
    while True:
        try:
            cells, error = next(reader), None
        except StopIteration:
            return
        except csv.Error as exc:
            cells, error = None, str(exc)
        raw = "".join(consumed)
        yield first, raw, cells, error
        if error and not consumed:  # an error that consumed nothing can only come at the very end
            return
        first += max(len(consumed), 1)
        consumed.clear()


def _csv_error_reason(error: str) -> str:
    if "field larger than field limit" in error:  # the csv module's own limit, above MAX_FIELD_CHARS
        return f"field too long: a CSV cell over {csv.field_size_limit():,} characters"
    return f"unreadable CSV row: {error}"


def _has_bad_bytes(text: str) -> bool:
    """Whether text decoded with `surrogateescape` holds bytes that were not UTF-8."""
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def read_parquet(path: Path) -> RawRows:
    """Columns named like the canonical fields; wrong column types are quarantined per row, not guessed."""
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise IngestError(f"{path}: not a readable Parquet file ({exc})") from exc
    frame.columns = [str(c) for c in frame.columns]
    frame = frame.reset_index(drop=True)
    n = len(frame)
    problems = np.full(n, None, dtype=object)
    repeated = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
    if repeated:
        problems[:] = f"Parquet file repeats a column: {repeated[0]}"
        frame = frame.loc[:, ~frame.columns.duplicated()]
    extra = [c for c in frame.columns if c not in CANONICAL_FIELDS]
    columns = pd.DataFrame({f: frame[f] for f in VALUE_FIELDS if f in frame.columns})
    if extra or "properties" in frame.columns:
        texts = []
        for i, row in enumerate(frame[[*extra, *(["properties"] if "properties" in frame else [])]]
                                .to_dict(orient="records")):
            text, problem = properties_text(row.pop("properties", None), row)
            texts.append(text)
            problems[i] = problems[i] or problem
        columns["properties"] = pd.Series(texts, dtype=object)

    def raw(at: np.ndarray) -> list[str]:
        rows = frame.iloc[at].to_dict(orient="records")
        return [json.dumps({k: v for k, v in r.items() if not is_missing(v)}, ensure_ascii=False, default=str)
                for r in rows]

    return RawRows([], [], [], [], ColumnRows(columns, np.arange(1, n + 1), raw, problems))


READERS: dict[str, Callable[[Path], RawRows]] = {
    ".jsonl": read_jsonl,
    ".ndjson": read_jsonl,
    ".json": read_jsonl,
    ".csv": read_csv,
    ".parquet": read_parquet,
}
