"""Erasure: remove a person from every store Nhịp keeps, and say so without keeping personal data.

Given any identifier, the person is the customer it resolves to with every link known today. Their
events (any row carrying one of their identifiers), quarantined rows mentioning them, derived profile and
identity rows, and their Qdrant profile vector are removed. The DuckDB file is then rewritten, because a
DELETE only marks rows and their bytes would otherwise linger on disk until compaction.

The audit record holds an erasure id, the time and the counts removed: no identifier, no customer id
(customer ids are derived from identifiers, so they are personal data too).

Files a user imported from stay as they are (raw data is immutable and not ours to edit): re-importing
them brings the person back, so the source systems must erase too.
"""

from __future__ import annotations

import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd

from features.identity.graph import IdentityConfig, resolve_graph
from features.ingest.parsers.emails import normalize_email
from features.ingest.parsers.phones import normalize_phone
from features.schema import IDENTIFIER_FIELDS
from features.store import connect, table_names
from features.vectors.config import VectorConfig
from features.vectors.stores import erase_customers
from nhip.clock import utcnow

# Derived tables that may hold a customer's rows; all can be rebuilt from `events`.
DERIVED_TABLES = {"profiles", "identity_map", "identity_merges", "identity_set_aside",
                  "customer_attributes"}


class ErasureError(LookupError):
    """Nothing in the store matches the identifier given for erasure."""


@dataclass
class ErasureReport:
    erasure_id: str
    customers: int
    identifiers: int
    removed: dict[str, int] = field(default_factory=dict)


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


def _quarantine_matches(con: duckdb.DuckDBPyConnection, patterns: list[str]) -> int:
    digits = [p.split(":", 1)[1] for p in patterns if p.startswith("digits:")]
    texts = [p.split(":", 1)[1] for p in patterns if p.startswith("text:")]
    conditions = [f"contains(regexp_replace(raw, '[^0-9]', '', 'g'), '{d}')" for d in digits]
    conditions += ["contains(lower(raw), ?)" for _ in texts]
    if not conditions:
        return 0
    where = " OR ".join(conditions)
    count = con.execute(f"SELECT count(*) FROM quarantine WHERE {where}", texts).fetchone()[0]
    con.execute(f"DELETE FROM quarantine WHERE {where}", texts)
    return int(count)


def _compact(store_path: Path) -> None:
    """Rewrite the database file so deleted rows leave no bytes behind."""
    fresh = store_path.with_suffix(".compact.duckdb")
    fresh.unlink(missing_ok=True)
    con = duckdb.connect(str(store_path))
    try:
        name = con.execute("SELECT current_database()").fetchone()[0]
        con.execute(f"ATTACH '{fresh}' AS fresh")
        con.execute(f'COPY FROM DATABASE "{name}" TO fresh')
        con.execute("DETACH fresh")
    finally:
        con.close()
    shutil.move(str(fresh), str(store_path))
    Path(str(store_path) + ".wal").unlink(missing_ok=True)


def erase(
    store_path: Path, identity: IdentityConfig, vectors: VectorConfig, id_type: str, value: str
) -> ErasureReport:
    """Erase the person behind one identifier (`phone`, `email`, any identifier type, or `customer_id`)
    from the store at `store_path` and the vector stores of `vectors`."""
    if id_type not in (*IDENTIFIER_FIELDS, "customer_id"):
        raise ErasureError(f"unknown identifier type {id_type!r}")
    value = value if id_type == "customer_id" else normalise_identifier(id_type, value)
    report = ErasureReport(erasure_id=uuid.uuid4().hex, customers=0, identifiers=0)
    con = connect(store_path)
    try:
        person = _person(con, id_type, value, identity)
        customers = sorted(person["customer_id"].unique())
        report.customers, report.identifiers = len(customers), len(person)
        con.execute("BEGIN TRANSACTION")
        con.register("erased_ids", person[["id_type", "id_value"]])
        matches = " OR ".join(
            f"EXISTS (SELECT 1 FROM erased_ids x WHERE x.id_type = '{f}' AND x.id_value = e.{f})"
            for f in IDENTIFIER_FIELDS
        )
        report.removed["events"] = con.execute(f"SELECT count(*) FROM events e WHERE {matches}").fetchone()[0]
        con.execute(f"DELETE FROM events e WHERE {matches}")
        report.removed["quarantine"] = _quarantine_matches(con, _raw_patterns(person))
        con.register("erased_customers", pd.DataFrame({"customer_id": customers}))
        for table in sorted(table_names(con) & DERIVED_TABLES):
            columns = {r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()}
            keys = [c for c in ("customer_id", "kept_customer_id", "absorbed_customer_id") if c in columns]
            conditions = [f"{k} IN (SELECT customer_id FROM erased_customers)" for k in keys]
            if {"id_type", "id_value"} <= columns:
                conditions.append("(id_type, id_value) IN (SELECT (id_type, id_value) FROM erased_ids)")
            if not conditions:
                continue
            where = " OR ".join(conditions)
            report.removed[table] = con.execute(f"SELECT count(*) FROM {table} WHERE {where}").fetchone()[0]
            con.execute(f"DELETE FROM {table} WHERE {where}")
        con.execute(
            "CREATE TABLE IF NOT EXISTS erasures (erasure_id VARCHAR, erased_at TIMESTAMP, "
            "customers INTEGER, identifiers INTEGER, events BIGINT, quarantined_rows BIGINT)"
        )
        con.execute(
            "INSERT INTO erasures VALUES (?, ?, ?, ?, ?, ?)",
            [report.erasure_id, utcnow(), report.customers,
             report.identifiers, report.removed["events"], report.removed["quarantine"]],
        )
        con.execute("COMMIT")
    except BaseException:
        try:
            con.execute("ROLLBACK")
        except duckdb.Error:  # the failure came before the transaction began
            pass
        raise
    finally:
        con.close()
    _compact(store_path)
    report.removed["vectors"] = erase_customers(vectors, customers)
    return report

