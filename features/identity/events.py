"""Events → customers: the events up to an as-of date, each with the customer its identifiers resolve to.

`resolve_events` returns a `ResolvedEvents` value, and every later stage takes that value as an argument:
profiles, labels, send-time inputs, BG/NBD summaries, affinities, attributes and product interactions.
It names its own relations on the connection (`events.view`, `events.identity_table`), so two values for
two dates live side by side on one connection and neither can be read through the other; and it carries
its as-of and identity configuration, so code that is handed a date checks it (`require`) rather than
silently reading another date's customers.

An event belongs to the customer of its primary identifier (`pid_*`, the first identifier it carries);
when that one is set aside, to the customer of the first of its other identifiers that has one. Events
carrying only set-aside identifiers belong to nobody and are left out (see `features.identity.graph`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime

import duckdb
import pandas as pd

from features.identity.graph import IdentityConfig, Resolution, resolve_graph
from features.schema import IDENTIFIER_FIELDS

_NUMBERS = itertools.count(1)


class AsOfMismatch(ValueError):
    """Resolved events built for one as-of date were handed to code working at another."""


def ts_literal(as_of: datetime) -> str:
    return f"TIMESTAMP '{pd.Timestamp(as_of).strftime('%Y-%m-%d %H:%M:%S.%f')}'"


@dataclass(eq=False)
class ResolvedEvents:
    """The events up to `as_of` with their customer_id, as one resolution sees them, on one connection.

    `view` is a temporary view with every column of `events` plus `customer_id`; `identity_table` holds
    (id_type, id_value, customer_id) of the resolution. Use as a context manager, or call `close`, to
    drop them; a closed value refuses to be read.
    """

    con: duckdb.DuckDBPyConnection
    resolution: Resolution
    view: str
    identity_table: str
    _temporary: list[str] = field(default_factory=list, repr=False)
    _closed: bool = field(default=False, repr=False)

    @property
    def as_of(self) -> datetime:
        return self.resolution.as_of

    @property
    def config(self) -> IdentityConfig:
        return self.resolution.config

    @property
    def identity(self) -> pd.DataFrame:
        """The identity map of the resolution (id_type, id_value, customer_id, first_seen)."""
        return self.resolution.identity

    @property
    def source(self) -> str:
        """The view's name, for SQL; raises once the value is closed."""
        if self._closed:
            raise RuntimeError(f"resolved events as of {self.as_of} were closed")
        return self.view

    def require(self, as_of: datetime) -> ResolvedEvents:
        """This value, if it was resolved for `as_of`; else `AsOfMismatch` (a silent leak otherwise)."""
        if as_of != self.as_of:
            raise AsOfMismatch(f"events resolved as of {self.as_of} cannot be used as of {as_of}")
        return self

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.con.execute(f"DROP VIEW IF EXISTS {self.view}")
        for name in reversed(self._temporary):
            self.con.execute(f"DROP TABLE IF EXISTS {name}")

    def __enter__(self) -> ResolvedEvents:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def resolve_events(con: duckdb.DuckDBPyConnection, as_of: datetime, config: IdentityConfig) -> ResolvedEvents:
    """Resolve identities as of `as_of` with `config`, then map the events up to `as_of` to customers."""
    return resolved_events(con, resolve_graph(con, as_of, config))


def resolved_events(con: duckdb.DuckDBPyConnection, resolution: Resolution) -> ResolvedEvents:
    """The events up to `resolution.as_of`, each with its customer under `resolution`.

    The events whose primary identifier is set aside (few) are found by a semi-join with the short
    set-aside list, by row id, and copied whole with their fallback customer; every other event joins the
    identity map on its primary identifier in the view itself, so no pass over all events is stored.
    """
    n = next(_NUMBERS)
    identity_table, set_aside, fallback = f"_identity_map_{n}", f"_identity_set_aside_{n}", f"_identity_fallback_{n}"
    view = f"_resolved_events_{n}"
    events = ResolvedEvents(con, resolution, view, identity_table, [identity_table, set_aside, fallback])
    con.register("_identity_map_df", resolution.identity)
    con.execute(f"CREATE TEMP TABLE {identity_table} AS SELECT id_type, id_value, customer_id FROM _identity_map_df")
    con.unregister("_identity_map_df")
    con.register("_set_aside_df", resolution.set_aside[["id_type", "id_value"]])
    con.execute(f"CREATE TEMP TABLE {set_aside} AS SELECT * FROM _set_aside_df")
    con.unregister("_set_aside_df")
    until = ts_literal(resolution.as_of)
    joins = "\n".join(
        f"LEFT JOIN {identity_table} m_{f} ON m_{f}.id_type = '{f}' AND m_{f}.id_value = e.{f}"
        for f in IDENTIFIER_FIELDS
    )
    first = ", ".join(f"m_{f}.customer_id" for f in IDENTIFIER_FIELDS)
    con.execute(
        f"""
        CREATE TEMP TABLE {fallback} AS
        SELECT coalesce({first}) AS customer_id, e.*
        FROM (SELECT e.* FROM events e SEMI JOIN {set_aside} s
              ON e.pid_type = s.id_type AND e.pid_value = s.id_value WHERE e.ts <= {until}) e
        {joins}
        WHERE coalesce({first}) IS NOT NULL
        """
    )
    con.execute(
        f"CREATE TEMP VIEW {view} AS "
        f"SELECT m.customer_id, e.* FROM events e JOIN {identity_table} m "
        "ON e.pid_type = m.id_type AND e.pid_value = m.id_value "
        f"WHERE e.ts <= {until} "
        "UNION ALL "
        f"SELECT * FROM {fallback}"
    )
    return events
