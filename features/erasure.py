"""Erasure: remove a person from every store Nhịp keeps, and say so without keeping personal data.

Given any identifier, the person is the customer it resolves to with every link known today (under the
workspace's identity configuration, the one every other path uses). Removed:

- from the event store, every event carrying one of their identifiers and every quarantined row that
  mentions one in any format: the segments holding them are rewritten without them, under the store's
  writer lock, and the old files deleted as soon as no reader still reads them (a training run that
  opened the store before the erasure keeps reading its version until it finishes; the report says how
  many files wait for that);
- from the feature builds: a new build without them becomes current, older builds are deleted, and the
  recorded merges forget them;
- their Qdrant profile point.

The audit record (`erasures`) holds an erasure id, the time and the counts removed: no identifier and no
customer id (customer ids are derived from identifiers, so they are personal data too).

Files a user imported from stay as they are (raw data is immutable and not ours to edit): re-importing
them brings the person back, so the source systems must erase too.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

from features.builds import TABLES as BUILD_TABLES
from features.builds import Builds, BuildsConfig
from features.identity.graph import IdentityConfig, resolve_graph
from features.ingest.parsers.emails import normalize_email
from features.ingest.parsers.phones import normalize_phone
from features.schema import IDENTIFIER_FIELDS
from features.store import open_store, quiet, store_writer
from features.store.writer import rewritten
from features.vectors.config import VectorConfig
from features.vectors.layout import PROFILES
from features.vectors.snapshot import snapshot_without
from features.vectors.stores import erase_from_qdrant
from nhip.clock import utcnow


class ErasureError(LookupError):
    """Nothing in the store matches the identifier given for erasure."""


@dataclass
class ErasureReport:
    erasure_id: str
    customers: int
    identifiers: int
    removed: dict[str, int] = field(default_factory=dict)
    # (id_type, id_value) of what was erased, for the caller to put on the activation layer's suppression
    # list (`serving.activation.consent.Suppression`); never printed or logged.
    erased_ids: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["id_type", "id_value"]),
                                     repr=False)


def normalise_identifier(id_type: str, value: str) -> str:
    """The stored form of an identifier given by a person, e.g. `0912 345 678` → `+84912345678`."""
    if id_type == "phone":
        normal = normalize_phone(value)
    elif id_type == "email":
        normal = normalize_email(value)
    else:
        normal = value.strip() or None
    if normal is None:
        raise ErasureError(f"{value!r} is not a valid {id_type}")
    return normal


def _person(con: duckdb.DuckDBPyConnection, id_type: str, value: str, config: IdentityConfig) -> pd.DataFrame:
    """Every identifier of the customer(s) the given identifier belongs to, with all links known now,
    resolved with `config` (the configuration every other path uses: erasing one person behind a shared
    hotline must not erase the strangers a looser guard would have merged with them)."""
    latest = con.execute("SELECT max(ts) FROM events").fetchone()[0]
    if latest is None:
        raise ErasureError("the event store is empty")
    identity = resolve_graph(con, latest, config).identity
    if id_type == "customer_id":
        customers = {value}
    else:
        customers = set(identity.loc[(identity["id_type"] == id_type) & (identity["id_value"] == value),
                                     "customer_id"])
    found = identity[identity["customer_id"].isin(customers)]
    if found.empty:
        raise ErasureError(f"no customer with that {id_type}")
    return found


def _raw_patterns(identifiers: pd.DataFrame) -> list[str]:
    """Substrings that reveal an identifier inside a raw quarantined row, whatever its formatting.

    Phones are matched on their last nine digits against the row with every non-digit removed.
    """
    patterns = []
    for row in identifiers.itertuples(index=False):
        if row.id_type == "phone":
            patterns.append("digits:" + re.sub(r"\D", "", row.id_value)[-9:])
        else:
            patterns.append("text:" + row.id_value.lower())
    return patterns


def _quarantine_condition(con: duckdb.DuckDBPyConnection, patterns: list[str]) -> str | None:
    """SQL keeping the quarantined rows `s` that mention none of the patterns (registered on `con`)."""
    digits = [p.split(":", 1)[1] for p in patterns if p.startswith("digits:")]
    texts = [p.split(":", 1)[1] for p in patterns if p.startswith("text:")]
    if not digits and not texts:
        return None
    con.register("erased_digits", pd.DataFrame({"d": pd.Series(digits, dtype=object)}))
    con.register("erased_texts", pd.DataFrame({"t": pd.Series(texts, dtype=object)}))
    return ("NOT EXISTS (SELECT 1 FROM erased_digits x WHERE contains(regexp_replace(s.raw, '[^0-9]', '', 'g'), x.d)) "
            "AND NOT EXISTS (SELECT 1 FROM erased_texts x WHERE contains(lower(s.raw), x.t))")


def erase(
    store_path: Path, builds: BuildsConfig, identity: IdentityConfig, vectors: VectorConfig, id_type: str,
    value: str,
) -> ErasureReport:
    """Erase the person behind one identifier (`phone`, `email`, any identifier type, or `customer_id`)
    from the store, the builds and Qdrant."""
    if id_type not in (*IDENTIFIER_FIELDS, "customer_id"):
        raise ErasureError(f"unknown identifier type {id_type!r}")
    value = value if id_type == "customer_id" else normalise_identifier(id_type, value)
    report = ErasureReport(erasure_id=uuid.uuid4().hex, customers=0, identifiers=0)
    with store_writer(store_path, doing="erasing a person") as writer:
        with open_store(store_path) as reader:
            person = _person(reader, id_type, value, identity)
        customers = sorted(person["customer_id"].unique())
        report.customers, report.identifiers = len(customers), len(person)
        report.erased_ids = person[["id_type", "id_value"]].reset_index(drop=True)
        con = quiet(duckdb.connect())
        try:
            con.register("erased_ids", person[["id_type", "id_value"]])
            matches = " OR ".join(
                f"EXISTS (SELECT 1 FROM erased_ids x WHERE x.id_type = '{f}' AND x.id_value = s.{f})"
                for f in IDENTIFIER_FIELDS)
            files = [str(store_path / s.name) for s in writer.manifest.segments["events"]]
            listed = ", ".join(f"'{f}'" for f in files)
            keys = con.sql(f"SELECT event_key FROM read_parquet([{listed}]) s WHERE {matches}").to_arrow_table() \
                if files else None
            events, event_files, report.removed["events"] = rewritten(writer, con, "events", f"NOT ({matches})")
            parts, replaced = {"events": events}, {"events": event_files}
            keep = _quarantine_condition(con, _raw_patterns(person))
            report.removed["quarantine"] = 0
            if keep is not None:
                parts["quarantine"], replaced["quarantine"], report.removed["quarantine"] = rewritten(
                    writer, con, "quarantine", keep)
        finally:
            con.close()
        parts["erasures"] = pa.table({
            "erasure_id": [report.erasure_id], "erased_at": pa.array([utcnow()], pa.timestamp("us")),
            "customers": pa.array([report.customers], pa.int32()),
            "identifiers": pa.array([report.identifiers], pa.int32()),
            "events": [report.removed["events"]], "quarantined_rows": [report.removed["quarantine"]]})
        writer.commit(parts, replaced=replaced,
                      forget_keys=keys.column("event_key") if keys is not None else None)
        report.removed["files_waiting_for_readers"] = len(writer.delete_unpinned())
    report.removed.update(erase_from_builds(builds, customers))
    report.removed["vectors"] = max(report.removed.get("vectors", 0), erase_from_qdrant(vectors, customers))
    return report


def erase_from_builds(config: BuildsConfig, customers: list[str]) -> dict[str, int]:
    """Make a copy of the current build without `customers` current, delete every other build, and drop
    them from the recorded merges. Returns the rows removed per table."""
    builds = Builds(config)
    removed: dict[str, int] = {}
    with builds.lock(wait=3600):
        current = builds.current()
        if current is not None:
            draft = builds.draft()
            for name in BUILD_TABLES:
                frame = pd.read_parquet(current.folder / f"{name}.parquet")
                mine = _rows_of(frame, customers)
                removed[f"build_{name}"] = int(mine.sum())
                frame[~mine].to_parquet(draft / f"{name}.parquet", index=False)
            if current.vectors is not None:
                removed["vectors"] = snapshot_without(current.vectors, draft / "vectors", PROFILES, customers)
            meta = {k: v for k, v in current.meta.items() if k != "build_id"}
            builds.publish(draft, {**meta, "erased_from": current.build_id})
        builds.prune(keep=1)
        for path in sorted(builds.history.glob("*.parquet")) if builds.history.exists() else []:
            frame = pd.read_parquet(path)
            mine = frame["kept_customer_id"].isin(customers) | frame["absorbed_customer_id"].isin(customers)
            if mine.any():
                frame[~mine].to_parquet(path, index=False)
    return removed


def _rows_of(frame: pd.DataFrame, customers: list[str]) -> pd.Series:
    if "customer_id" in frame.columns:
        return frame["customer_id"].isin(customers)
    return pd.Series(False, index=frame.index)
