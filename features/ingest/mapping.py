"""Import CSV exports with their own column names through a small declarative mapping file (TOML).

A POS or Zalo OA export names its columns in Vietnamese, writes times as `dd/mm/yyyy HH:MM` and states
("Đang quan tâm") instead of canonical event types. A mapping file says, once per kind of export, which
column holds which canonical field (shared/brief/events.md), which constants every row gets, how times are
written and how source values translate; the rows then go through the normal import step
(`features.ingest.importer.import_rows`), with its normalisation, deduplication, quarantine and accounting:
rows read = accepted + duplicates + quarantined.

    name = "pos-kiotviet"            # recorded as the events' source, with the file name
    [defaults]                        # constants for every row (a mapped column's value wins when present)
    channel = "pos"
    type = "purchase"
    [columns]                         # source column -> canonical field, or "properties.<key>"
    "Mã hóa đơn" = "properties.invoice"
    "Thời gian" = "ts"
    "Điện thoại" = "phone"
    [combine]                         # a field made of several columns, joined with "/" (ts: " ")
    event_id = ["Mã hóa đơn", "Mã hàng"]  # or { columns = [...], separator = "-" }
    [formats]                         # strptime format of ts; without it the normal parsers read it
    ts = "%d/%m/%Y %H:%M"
    [values.type]                     # source value -> canonical value ("*" = any other value)
    "Đang quan tâm" = "follow"

Top-level options: `encoding` ("auto": UTF-8, UTF-8 with BOM or UTF-16 with BOM; or a codec such as
"cp1258"), `delimiter` ("," ";" or "\\t"; default: guessed from the header line), `skip_rows` (title lines
above the header), `optional` (mapped columns an export may lack), and what becomes of unmapped columns:
they go to `properties` under their header, except those listed in `drop`; `keep = [...]` keeps only the
listed ones.

Column headers and mapped values match ignoring case, surrounding and repeated whitespace and Unicode
normalisation (NFC vs NFD, as macOS and old Windows exports write Vietnamese). A mapping file that is wrong
in itself, or a mapped column missing from an export's header, stops the import with a `MappingError`
naming the problem; a row the mapping cannot translate (a value not in `[values.…]`, a time that does not
match `[formats]`) is quarantined with the reason, like any other unusable row.

`.xlsx` workbooks are not read (openpyxl is not a dependency): save the sheet as "CSV UTF-8".
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import re
import tomllib
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from features.ingest.importer import WRITER_WAIT_SECONDS, IngestReport, import_rows
from features.ingest.readers import IngestError
from features.ingest.rows import RawRows
from features.schema import CANONICAL_FIELDS, IDENTIFIER_FIELDS

__all__ = ["Mapping", "MappingError", "load_mapping", "parse_mapping", "read_mapped", "ingest_mapped"]

_TOKEN_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_TARGETS = tuple(f for f in CANONICAL_FIELDS if f != "properties")
_PROPERTY_PREFIX = "properties."
_OPTIONS = ("name", "encoding", "delimiter", "skip_rows", "optional", "drop", "keep",
            "defaults", "columns", "combine", "formats", "values")
_DELIMITERS = {",": ",", ";": ";", "\t": "\t", "\\t": "\t", "tab": "\t"}
_COMBINE_SEPARATOR = "/"
_ANY_VALUE = "*"
_EXCEL_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".ods")


class MappingError(IngestError):
    """The mapping file is wrong, or does not fit the export's header; nothing is imported."""


def header_key(text: str) -> str:
    """How headers and mapped values are compared: NFC, case-folded, whitespace trimmed and collapsed."""
    text = unicodedata.normalize("NFC", text.replace("\ufeff", ""))
    return unicodedata.normalize("NFC", " ".join(text.split()).casefold())


@dataclass(frozen=True)
class Mapping:
    """A validated mapping file; build it with `load_mapping` or `parse_mapping`."""

    name: str
    columns: dict[str, str]                 # source column as written -> target field
    defaults: dict[str, str] = field(default_factory=dict)
    combine: dict[str, tuple[str, ...]] = field(default_factory=dict)
    separators: dict[str, str] = field(default_factory=dict)  # combine target -> joining text
    formats: dict[str, str] = field(default_factory=dict)
    values: dict[str, dict[str, str]] = field(default_factory=dict)  # target -> {header_key(value): value}
    optional: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()
    keep: tuple[str, ...] | None = None
    encoding: str = "auto"
    delimiter: str | None = None
    skip_rows: int = 0
    origin: str = "<mapping>"

    @property
    def sources(self) -> dict[str, str]:
        """Every source column the mapping reads, as written, with what it feeds (for messages)."""
        used = dict(self.columns)
        for target, parts in self.combine.items():
            for part in parts:
                used.setdefault(part, target)
        return used


def load_mapping(path: Path | str) -> Mapping:
    """Read and validate a mapping file; a `MappingError` names the file and what is wrong in it."""
    path = Path(path)
    if not path.is_file():
        raise MappingError(f"{path}: no such mapping file")
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise MappingError(f"{path}: a mapping file must be UTF-8 ({exc.reason} at byte {exc.start})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(f"{path}: not valid TOML: {exc}") from exc
    return parse_mapping(data, origin=str(path))


def parse_mapping(data: dict, origin: str = "<mapping>") -> Mapping:
    """Validate the parsed TOML of a mapping file (see the module docstring for its keys)."""
    def fail(message: str) -> None:
        raise MappingError(f"{origin}: {message}")

    unknown = [k for k in data if k not in _OPTIONS]
    if unknown:
        fail(f"unknown key {unknown[0]!r}; a mapping has: {', '.join(_OPTIONS)}")

    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        fail('`name` is required: a short text such as name = "pos-kiotviet", recorded as the source')

    def table(key: str) -> dict:
        value = data.get(key, {})
        if not isinstance(value, dict):
            fail(f"[{key}] must be a table, not {type(value).__name__}")
        return value

    def column_list(key: str) -> tuple[str, ...]:
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            fail(f"`{key}` must be a list of column names, e.g. {key} = [\"Ghi chú\"]")
        return tuple(value)

    def check_target(target: object, where: str) -> str:
        if not isinstance(target, str):
            fail(f"{where} must name a canonical field (a string), not {target!r}")
        if target.startswith(_PROPERTY_PREFIX) and len(target) > len(_PROPERTY_PREFIX):
            return target
        if target not in _TARGETS:
            hint = " (map columns to properties.<key>, or leave them unmapped)" if target == "properties" else ""
            fail(f"{where} maps to unknown field {target!r}{hint}; canonical fields: "
                 f"{', '.join(_TARGETS)}, or properties.<key>")
        return target

    columns: dict[str, str] = {}
    seen_columns: dict[str, str] = {}
    fed_by: dict[str, str] = {}
    for column, target in table("columns").items():
        where = f"[columns] {column!r}"
        target = check_target(target, where)
        if header_key(column) in seen_columns:
            fail(f"[columns] lists {column!r} and {seen_columns[header_key(column)]!r}, which are the same header")
        if target in fed_by:
            fail(f"{target} is mapped from both {fed_by[target]!r} and {column!r}")
        seen_columns[header_key(column)] = column
        fed_by[target] = column
        columns[column] = target

    combine: dict[str, tuple[str, ...]] = {}
    separators: dict[str, str] = {}
    for target, parts in table("combine").items():
        target = check_target(target, "[combine] key")
        separator = " " if target == "ts" else _COMBINE_SEPARATOR
        if isinstance(parts, dict):
            unknown_keys = set(parts) - {"columns", "separator"}
            separator = parts.get("separator", separator)
            if unknown_keys or not isinstance(separator, str):
                fail(f"[combine] {target} = {{ columns = [...], separator = \" \" }} has only those two keys")
            parts = parts.get("columns")
        if (not isinstance(parts, list) or len(parts) < 2
                or not all(isinstance(p, str) and p.strip() for p in parts)):
            fail(f"[combine] {target} must list two or more columns, e.g. {target} = [\"Mã hóa đơn\", \"Mã hàng\"]")
        separators[target] = separator
        if target in fed_by:
            fail(f"{target} is both mapped from {fed_by[target]!r} and combined in [combine]")
        fed_by[target] = " + ".join(parts)
        combine[target] = tuple(parts)

    defaults: dict[str, str] = {}
    for target, value in table("defaults").items():
        target = check_target(target, f"[defaults] {target!r}")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            fail(f"[defaults] {target} must be a text or a number, not {value!r}")
        value = str(value).strip()
        if target in ("channel", "type") and not _TOKEN_RE.match(value):
            fail(f"[defaults] {target} = {value!r} is not a lowercase token such as \"pos\" or \"purchase\"")
        defaults[target] = value

    formats: dict[str, str] = {}
    for target, fmt in table("formats").items():
        if target != "ts":
            fail(f"[formats] {target}: only ts takes a format (amounts and phones are read as written)")
        if not isinstance(fmt, str) or "%" not in fmt:
            fail(f"[formats] ts = {fmt!r} is not a strptime format; write e.g. ts = \"%d/%m/%Y %H:%M\"")
        try:
            datetime.now().strftime(fmt)
        except ValueError as exc:
            fail(f"[formats] ts = {fmt!r} is not a strptime format: {exc}")
        if target not in fed_by:
            fail("[formats] ts is given but no column maps to ts")
        formats[target] = fmt

    values: dict[str, dict[str, str]] = {}
    for target, translation in table("values").items():
        if not isinstance(translation, dict):
            fail(f"[values] {target} must be a table: [values.{target}] then \"source value\" = \"value\"")
        if target not in fed_by:
            fail(f"[values.{target}]: no column maps to {target}")
        out: dict[str, str] = {}
        for raw, value in translation.items():
            if not isinstance(value, str):
                fail(f"[values.{target}] {raw!r} must translate to a text, not {value!r}")
            if target in ("channel", "type") and not _TOKEN_RE.match(value):
                fail(f"[values.{target}] {raw!r} = {value!r} is not a lowercase token")
            out[raw if raw == _ANY_VALUE else header_key(raw)] = value
        values[target] = out

    for required in ("ts", "channel", "type"):
        if required not in fed_by and required not in defaults:
            fail(f"nothing gives {required}: map a column to it in [columns] or set it in [defaults]")
    if not any(f in fed_by for f in IDENTIFIER_FIELDS):
        fail(f"no identifier column: map at least one column to {', '.join(IDENTIFIER_FIELDS)}")

    optional, drop = column_list("optional"), column_list("drop")
    keep = column_list("keep") if "keep" in data else None
    mapped = {header_key(c) for c in columns} | {header_key(p) for parts in combine.values() for p in parts}
    for key, listed in (("drop", drop), ("keep", keep or ())):
        for column in listed:
            if header_key(column) in mapped:
                fail(f"`{key}` names {column!r}, which is mapped; only unmapped columns go to properties")
    for column in optional:
        if header_key(column) not in mapped:
            fail(f"`optional` names {column!r}, which no [columns] or [combine] entry reads")
    if drop and keep is not None:
        fail("use `drop` or `keep`, not both")

    encoding = data.get("encoding", "auto")
    if not isinstance(encoding, str):
        fail("`encoding` must be a text such as \"auto\", \"utf-8\" or \"cp1258\"")
    if encoding != "auto":
        try:
            codecs.lookup(encoding)
        except LookupError:
            fail(f"unknown encoding {encoding!r}; use \"auto\", \"utf-8\", \"utf-16\" or \"cp1258\"")
    delimiter = data.get("delimiter")
    if delimiter is not None and delimiter not in _DELIMITERS:
        fail(f"`delimiter` = {delimiter!r}: use \",\", \";\" or \"\\t\" (or leave it out to guess)")
    skip_rows = data.get("skip_rows", 0)
    if isinstance(skip_rows, bool) or not isinstance(skip_rows, int) or skip_rows < 0:
        fail("`skip_rows` must be a whole number ≥ 0 (title lines above the header)")

    return Mapping(
        name=name.strip(), columns=columns, defaults=defaults, combine=combine, separators=separators,
        formats=formats,
        values=values, optional=optional, drop=drop, keep=keep, encoding=encoding,
        delimiter=_DELIMITERS[delimiter] if delimiter is not None else None, skip_rows=skip_rows,
        origin=origin,
    )


# Reading a file through a mapping.


def _decode(data: bytes, path: Path, mapping: Mapping) -> str:
    """The file's text, NFC: explicit encoding, or BOM-detected UTF-8/UTF-16, else strict UTF-8."""
    encoding = mapping.encoding
    if encoding == "auto":
        if data.startswith(codecs.BOM_UTF8):
            encoding = "utf-8-sig"
        elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            encoding = "utf-16"  # Excel's "Unicode Text" export
        elif len(data) >= 4 and data[1] == 0 and data[3] == 0 and data[0] and data[2]:
            encoding = "utf-16-le"
        else:
            encoding = "utf-8"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        hint = ""
        if mapping.encoding == "auto":
            hint = ("; an Excel \"CSV (Comma delimited)\" export from Vietnamese Windows is cp1258: "
                    "set encoding = \"cp1258\" in the mapping, or save it as \"CSV UTF-8\"")
        raise IngestError(
            f"{path}: not {encoding} (byte 0x{data[exc.start]:02x} on line {line}){hint}") from exc
    return unicodedata.normalize("NFC", text.removeprefix("\ufeff"))


def _guess_delimiter(line: str) -> str:
    counts = {d: line.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _header_line(text: str, skip_rows: int) -> str:
    return next(itertools.islice(io.StringIO(text), skip_rows, None), "")


class _Raw:
    """One source row as CSV text, for quarantine."""

    def __init__(self, delimiter: str) -> None:
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, delimiter=delimiter, lineterminator="")

    def __call__(self, row: list[str]) -> str:
        self._buffer.seek(0)
        self._buffer.truncate()
        self._writer.writerow(row)
        return self._buffer.getvalue()


def read_mapped(path: Path | str, mapping: Mapping) -> RawRows:
    """The export's rows as canonical records, ready for `store_rows`.

    Raises `MappingError` when a mapped column is missing from the header and `IngestError` when the file
    cannot be read at all; rows the mapping cannot translate are returned as unreadable with a reason.
    """
    path = Path(path)
    if path.suffix.lower() in _EXCEL_SUFFIXES:
        raise IngestError(f"{path}: Excel workbooks are not read (openpyxl is not installed); in Excel use "
                          f"File › Save As › \"CSV UTF-8 (Comma delimited)\" and import the .csv")
    text = _decode(path.read_bytes(), path, mapping)
    delimiter = mapping.delimiter or _guess_delimiter(_header_line(text, mapping.skip_rows))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    out = RawRows([], [], [], [])
    for _ in range(mapping.skip_rows):
        next(reader, None)
    header = next(reader, None)
    if header is None:
        return out
    plan = _Plan(mapping, header, path)
    raw = _Raw(delimiter)
    width = len(header)
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        number = reader.line_num
        if len(row) > width and not any(cell.strip() for cell in row[width:]):
            row = row[:width]  # trailing empty cells, as spreadsheets write them
        if len(row) != width:
            out.unreadable.append((number, raw(row), f"{len(row)} cells for {width} columns"))
            continue
        record, problem = plan.record(row)
        if problem:
            out.unreadable.append((number, raw(row), problem))
            continue
        out.records.append(record)
        out.lines.append(number)
        out.raw_text.append(raw(row))
    return out


class _Plan:
    """Where each cell of a row goes, worked out once from the header."""

    def __init__(self, mapping: Mapping, header: list[str], path: Path) -> None:
        self.mapping = mapping
        positions: dict[str, int] = {}
        for i, name in enumerate(header):
            positions.setdefault(header_key(name), i)
        optional = {header_key(c) for c in mapping.optional}
        for column, target in mapping.sources.items():
            if header_key(column) not in positions and header_key(column) not in optional:
                shown = ", ".join(f'"{h.strip()}"' for h in header)
                raise MappingError(
                    f"{path}: column \"{column}\" (mapped to {target} by {mapping.origin}) is not in the "
                    f"file's header; the header is: {shown}")
        self.mapped = [(positions[header_key(c)], t) for c, t in mapping.columns.items() if header_key(c) in positions]
        self.combined = [
            (target, ([positions.get(header_key(p)) for p in parts], mapping.separators[target]))
            for target, parts in mapping.combine.items()]
        used = {i for i, _ in self.mapped} | {
            i for _, (parts, _) in self.combined for i in parts if i is not None}
        drop = {header_key(c) for c in mapping.drop}
        keep = None if mapping.keep is None else {header_key(c) for c in mapping.keep}
        self.extra: list[tuple[int, str]] = []
        names: set[str] = set()
        for i, name in enumerate(header):
            label = " ".join(unicodedata.normalize("NFC", name).replace("\ufeff", "").split())
            kept = keep is None or header_key(label) in keep
            if i in used or not label or header_key(label) in drop or not kept:
                continue
            while label in names:
                label += "_"
            names.add(label)
            self.extra.append((i, label))
        self.ts_format = mapping.formats.get("ts")

    def record(self, row: list[str]) -> tuple[dict, str | None]:
        """(canonical record, None), or ({}, reason) when the mapping cannot translate the row."""
        record: dict = {}
        properties: dict[str, str] = {}
        for i, target in self.mapped:
            value = row[i].strip()
            if value and (problem := self._put(record, properties, target, value)):
                return {}, problem
        for target, (parts, separator) in self.combined:
            cells = [row[i].strip() if i is not None else "" for i in parts]
            # A partial key would merge different rows; without it the row's content is its key.
            if all(cells) and (problem := self._put(record, properties, target, separator.join(cells))):
                return {}, problem
        for target, value in self.mapping.defaults.items():
            if target.startswith(_PROPERTY_PREFIX):
                properties.setdefault(target[len(_PROPERTY_PREFIX):], value)
            else:
                record.setdefault(target, value)
        for i, label in self.extra:
            value = row[i].strip()
            if value:
                properties.setdefault(label, value)
        if properties:
            record["properties"] = properties
        return record, None

    def _put(self, record: dict, properties: dict, target: str, value: str) -> str | None:
        """Translate and store one value; the quarantine reason when it cannot be translated."""
        translation = self.mapping.values.get(target)
        if translation is not None:
            translated = translation.get(header_key(value), translation.get(_ANY_VALUE))
            if translated is None:
                return f"{target}: value not in [values.{target}] of the mapping"
            value = translated
        if target == "ts" and self.ts_format:
            try:
                value = datetime.strptime(value, self.ts_format).isoformat()
            except ValueError:
                return f"ts does not match the mapping's format {self.ts_format!r}"
        if target.startswith(_PROPERTY_PREFIX):
            properties[target[len(_PROPERTY_PREFIX):]] = value
        else:
            record[target] = value
        return None


def ingest_mapped(path: Path | str, store_path: Path, mapping: Mapping, source: str | None = None,
                  wait: float = WRITER_WAIT_SECONDS, on_wait: Callable[[str], None] | None = None) -> IngestReport:
    """Import one export through `mapping`, in one commit, like `features.ingest.importer.ingest_file`
    (`wait` and `on_wait` as there).

    The events' source is `<mapping name>:<file name>` unless given.
    """
    path = Path(path)
    if not path.is_file():
        raise IngestError(f"{path}: no such file")
    report, _ = import_rows(store_path, read_mapped(path, mapping), source or f"{mapping.name}:{path.name}",
                            wait=wait, on_wait=on_wait)
    return report
