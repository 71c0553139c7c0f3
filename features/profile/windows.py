"""SQL fragments shared by the profile themes: time since, time windows, customer-initiated events.

Every fragment reads the query parameter `$as_of` and the columns of resolved events
(`features.identity.events`); the themes
aggregate them per customer, so a window always ends at `as_of` and never looks past it.
"""

from __future__ import annotations

# What the customer did, as opposed to what the shop did to them: a campaign sent yesterday is not
# activity, so it must not make a silent customer look recent or give them enough history to score.
ACTIVE = "type NOT IN ('message_sent', 'message_delivered')"


def days_since(expr: str) -> str:
    return f"date_diff('second', {expr}, $as_of) / 86400.0"


def within(days: int) -> str:
    """Events in the `days` days up to and including as_of (over cells: `days` must be one of `WINDOWS`)."""
    return f"ts > $as_of - INTERVAL {days} DAY"


def quoted(values) -> str:
    return ", ".join(f"'{v}'" for v in values)


# ---------------------------------------------------------------------------------------------------------
# Event cells: the one-pass aggregates read pre-aggregated cells, not single events
# ---------------------------------------------------------------------------------------------------------
# `build_profiles` first groups the resolved events by (customer_id, type, channel, window bucket), where
# the bucket says which of `WINDOWS` an event falls in. Every event of a cell is inside or outside each
# window alike, so a window test on the cell's latest `ts` holds for all its events, and the ~130 filtered
# aggregates run over a few rows per customer instead of every event. Cell columns: customer_id, type,
# channel, n (events), ts (latest), first_ts (earliest), amount (sum), n_amount (events with an amount).
# The helpers below write `agg(CASE WHEN … END)` rather than `agg(…) FILTER (WHERE …)`: with ~130 of
# them in one GROUP BY, DuckDB runs the CASE form about twice as fast.
WINDOWS: tuple[int, ...] = (7, 30, 90)


def cells_sql(source: str) -> str:
    bucket = " + ".join(f"({within(d)})::TINYINT" for d in WINDOWS)
    return (f"SELECT customer_id, type, channel, count(*) AS n, max(ts) AS ts, min(ts) AS first_ts, "
            f"sum(amount) AS amount, count(amount) AS n_amount FROM {source} "
            f"GROUP BY customer_id, type, channel, {bucket}")


def n_events(where: str) -> str:
    """count(*) FILTER (WHERE where), over cells."""
    return f"sum(CASE WHEN {where} THEN n ELSE 0 END)::BIGINT"


def last_ts(where: str) -> str:
    return f"max(CASE WHEN {where} THEN ts END)"


def first_ts(where: str | None = None) -> str:
    return "min(first_ts)" if where is None else f"min(CASE WHEN {where} THEN first_ts END)"


def total_amount(where: str) -> str:
    """coalesce(sum(amount) FILTER (WHERE where), 0), over cells."""
    return f"coalesce(sum(CASE WHEN {where} THEN amount END), 0)"


def mean_amount(where: str) -> str:
    """avg(amount) FILTER (WHERE where), over cells (NULL without an amount)."""
    return (f"(sum(CASE WHEN {where} THEN amount END) "
            f"/ nullif(sum(CASE WHEN {where} THEN n_amount ELSE 0 END), 0))")
