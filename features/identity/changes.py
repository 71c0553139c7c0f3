"""Merges, splits and renames between two feature builds (recorded with each build)."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from features.identity.graph import Resolution, id_key
from nhip.clock import utcnow

CHANGE_COLUMNS = ["recorded_at", "as_of", "previous_as_of", "kind", "kept_customer_id",
                  "absorbed_customer_id", "a_type", "b_type", "event_key", "link_ts", "detail"]


def identity_changes(
    previous: pd.DataFrame,
    resolution: Resolution,
    previous_as_of: datetime | None = None,
    recorded_at: datetime | None = None,
) -> pd.DataFrame:
    """What happened to the customers of `previous` (an identity map) in `resolution` (CHANGE_COLUMNS).

    - merge: identifiers of `absorbed_customer_id` now belong to `kept_customer_id`, the older of the
      two; `a_type`/`b_type`/`event_key`/`link_ts` name the earliest link joining them.
    - split: part of `kept_customer_id` is now `absorbed_customer_id` (read: split off into); `a_type` is
      the type of the identifier set aside that had held them together, `detail` says why.
    - renamed: all of a customer's identifiers now carry another id (an identifier older than its oldest
      appeared, e.g. a backfill, or its oldest identifier was set aside).
    Identifiers new since `previous` join silently; identifiers gone (erased) are not reported.
    """
    recorded_at = recorded_at or utcnow()
    current = resolution.identity
    rows: list[dict] = []
    base = {"recorded_at": recorded_at, "as_of": resolution.as_of, "previous_as_of": previous_as_of}
    if previous is None or previous.empty or current.empty:
        return pd.DataFrame(rows, columns=CHANGE_COLUMNS)
    before = previous[["id_type", "id_value", "customer_id"]].rename(columns={"customer_id": "before"})
    both = current[["id_type", "id_value", "customer_id"]].merge(before, on=["id_type", "id_value"])

    # One pass over the customers: who came from one previous customer, who from several.
    pairs = both[["customer_id", "before"]].drop_duplicates()
    n_befores = pairs.groupby("customer_id").size()
    afters_per_before = pairs.groupby("before").size()
    single = pairs[pairs["customer_id"].map(n_befores) == 1]
    renamed = single[(single["before"] != single["customer_id"]) & (single["before"].map(afters_per_before) == 1)]
    for customer, before_id in zip(renamed["customer_id"], renamed["before"]):
        rows.append({**base, "kind": "renamed", "kept_customer_id": customer,
                     "absorbed_customer_id": before_id, "detail": "oldest identifier changed"})

    several = pairs[pairs["customer_id"].map(n_befores) > 1]
    merged = several.groupby("customer_id")["before"].agg(sorted)
    if len(merged):
        used = resolution.links[resolution.links["used"]].sort_values(["first_ts", "event_key"])
        customer_of = dict(zip(id_key(current["id_type"], current["id_value"]), current["customer_id"]))
        a_keys = id_key(used["a_type"], used["a_value"])
        used = used.assign(key_a=a_keys, key_b=id_key(used["b_type"], used["b_value"]),
                           customer=a_keys.map(customer_of))
        links_of = dict(tuple(used[used["customer"].isin(merged.index)].groupby("customer")))
        mine = both[both["customer_id"].isin(merged.index)]
        anchors = mine.assign(key=id_key(mine["id_type"], mine["id_value"])) \
            .drop_duplicates(["customer_id", "before"]).groupby("customer_id")
        for customer, befores in merged.items():
            reference = customer if customer in befores else befores[0]
            anchor = dict(zip(*[anchors.get_group(customer)[c] for c in ("before", "key")]))
            for absorbed, link in _merge_links(links_of.get(customer), anchor, reference).items():
                rows.append({**base, "kind": "merge", "kept_customer_id": customer,
                             "absorbed_customer_id": absorbed,
                             "a_type": None if link is None else link.a_type,
                             "b_type": None if link is None else link.b_type,
                             "event_key": None if link is None else link.event_key,
                             "link_ts": None if link is None else link.first_ts,
                             "detail": f"{len(befores)} customers became one"})

    set_aside = resolution.set_aside
    split = pairs[pairs["before"].map(afters_per_before) > 1]
    for before_id, afters in split.groupby("before")["customer_id"].agg(sorted).items():
        was = previous[previous["customer_id"] == before_id]
        gone = set_aside.merge(was[["id_type", "id_value"]], on=["id_type", "id_value"])
        cause = gone.iloc[0] if len(gone) else None
        for after in afters:
            if after == before_id:
                continue
            why = "split" if cause is None else f"{cause['id_type']} set aside: {cause['reason']}"
            rows.append({**base, "kind": "split", "kept_customer_id": before_id,
                         "absorbed_customer_id": after,
                         "a_type": None if cause is None else cause["id_type"], "detail": why})
    frame = pd.DataFrame(rows, columns=CHANGE_COLUMNS)
    return frame.sort_values(["kind", "kept_customer_id", "absorbed_customer_id"], ignore_index=True)


def _merge_links(links: pd.DataFrame | None, anchor: dict[str, str], reference: str) -> dict:
    """For each previous customer other than `reference` (`anchor`: previous customer → one of its
    identifiers in the merged customer): the link that joined it to `reference`.

    Links are replayed in time order (union-find); the cause of a merge is the link after which the two
    previous customers are first connected, i.e. the one that completed the path between them.
    """
    found: dict[str, object] = {b: None for b in anchor if b != reference}
    if links is None:
        return found
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    waiting = set(found)
    for link in links.itertuples(index=False):
        parent[root(link.key_a)] = root(link.key_b)
        for b in [b for b in sorted(waiting) if root(anchor[b]) == root(anchor[reference])]:
            found[b] = link
            waiting.discard(b)
        if not waiting:
            break
    return found
