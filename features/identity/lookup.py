"""Finding identifiers from what a person typed: a phone in any format, an email, any other id, a customer id."""

from __future__ import annotations

from features.identity.graph import Resolution, id_key
from features.ingest.parsers.emails import normalize_email
from features.ingest.parsers.phones import normalize_phone
from features.schema import IDENTIFIER_FIELDS


def candidate_identifiers(value: str, id_type: str | None = None) -> list[tuple[str, str]]:
    """The stored forms a raw identifier could take: a phone or email normalised, others as given."""
    raw = value.strip()
    types = [id_type] if id_type else list(IDENTIFIER_FIELDS)
    out = []
    for t in types:
        if t == "phone":
            normal = normalize_phone(raw)
        elif t == "email":
            normal = normalize_email(raw)
        else:
            normal = raw or None
        if normal is not None:
            out.append((t, normal))
    return out


def find_identifier(
    resolution: Resolution, value: str, id_type: str | None = None
) -> list[tuple[str, str]]:
    """The identifiers seen by `as_of` that `value` may denote (a customer id denotes its identifiers)."""
    nodes = resolution.nodes
    known = set(id_key(nodes["id_type"], nodes["id_value"]))
    if id_type in (None, "customer_id") and value.strip().startswith("c_"):
        rows = resolution.identity[resolution.identity["customer_id"] == value.strip()]
        if len(rows):
            oldest = rows.sort_values("first_seen").iloc[0]
            return [(oldest["id_type"], oldest["id_value"])]
    return [(t, v) for t, v in candidate_identifiers(value, id_type) if f"{t}\x1f{v}" in known]
