"""What the store says about contacting customers, read fresh at the moment a decision is made.

A feature build is a snapshot, but decisions about whom to message cannot wait for the next one:
- a revocation that arrived after the build must stop the very next send (`revocations_since`);
- the frequency caps count every message already sent, up to now (`sends_since`);
- the Zalo OA's free reply window opens at the customer's last own action on the OA (`last_oa_interactions`).

Events are mapped to customers through a build's identity table (id_type, id_value, customer_id): an event
belongs to the first customer any of its identifiers resolves to. An event whose identifiers were first seen
after the build resolves to nobody here; for revocations that is the safe side only because such a person is
not in the build either, so no plan can contain them.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd

from features.identity.events import ts_literal
from features.schema import IDENTIFIER_FIELDS
from features.store import open_store

# Per channel: the event types that withdraw consent (as in `features.profile.wide`, where the latest
# consent event wins).
REVOKING_TYPES: tuple[str, ...] = ("unsubscribe", "consent_revoked", "unfollow")
# What a customer does on the OA that opens its free reply window (Zalo: "the user's last interaction").
OA_INTERACTIONS: tuple[str, ...] = ("message_replied", "follow")


def _resolved(con, identity: pd.DataFrame, where: str, columns: str) -> pd.DataFrame:
    """`columns` of the events matching `where`, with the customer_id their identifiers resolve to."""
    con.register("contact_identity", identity[["id_type", "id_value", "customer_id"]])
    try:
        joins = " ".join(
            f"LEFT JOIN contact_identity i{n} ON i{n}.id_type = '{f}' AND i{n}.id_value = e.{f}"
            for n, f in enumerate(IDENTIFIER_FIELDS))
        owner = "coalesce(" + ", ".join(f"i{n}.customer_id" for n in range(len(IDENTIFIER_FIELDS))) + ")"
        return con.execute(
            f"SELECT * FROM (SELECT {owner} AS customer_id, {columns} FROM events e {joins} WHERE {where}) "
            "WHERE customer_id IS NOT NULL ORDER BY customer_id, ts").df()
    finally:
        con.unregister("contact_identity")


def _channels(channels) -> str:
    return ", ".join("'" + c.replace("'", "") + "'" for c in channels)


def revocations_since(store_path: Path, identity: pd.DataFrame, since: datetime,
                      channels: tuple[str, ...]) -> pd.DataFrame:
    """customer_id, channel, ts of every consent withdrawal on `channels` after `since` (naive UTC)."""
    types = _channels(REVOKING_TYPES)
    with open_store(store_path) as con:
        return _resolved(con, identity, f"e.ts > {ts_literal(since)} AND e.type IN ({types}) "
                                        f"AND e.channel IN ({_channels(channels)})", "e.channel, e.ts")


def sends_since(store_path: Path, identity: pd.DataFrame, since: datetime,
                channels: tuple[str, ...]) -> pd.DataFrame:
    """customer_id, channel, ts of every `message_sent` on `channels` after `since`: what the caps count."""
    with open_store(store_path) as con:
        return _resolved(con, identity, f"e.ts > {ts_literal(since)} AND e.type = 'message_sent' "
                                        f"AND e.channel IN ({_channels(channels)})", "e.channel, e.ts")


def last_oa_interactions(store_path: Path, identity: pd.DataFrame, since: datetime) -> pd.Series:
    """Per customer, the time (naive UTC) of their latest own action on the Zalo OA after `since`."""
    types = _channels(OA_INTERACTIONS)
    with open_store(store_path) as con:
        frame = _resolved(con, identity, f"e.ts > {ts_literal(since)} AND e.channel = 'zalo_oa' "
                                         f"AND e.type IN ({types})", "e.ts")
    return frame.groupby("customer_id")["ts"].max() if len(frame) else pd.Series(dtype="datetime64[us]")
