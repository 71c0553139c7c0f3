"""SQL fragments shared by the profile themes: time since, time windows, customer-initiated events.

Every fragment reads the query parameter `$as_of` and the columns of `resolved_events`; the themes
aggregate them per customer, so a window always ends at `as_of` and never looks past it.
"""

from __future__ import annotations

# What the customer did, as opposed to what the shop did to them: a campaign sent yesterday is not
# activity, so it must not make a silent customer look recent or give them enough history to score.
ACTIVE = "type NOT IN ('message_sent', 'message_delivered')"


def days_since(expr: str) -> str:
    return f"date_diff('second', {expr}, $as_of) / 86400.0"


def within(days: int) -> str:
    """Events in the `days` days up to and including as_of."""
    return f"ts > $as_of - INTERVAL {days} DAY"


def quoted(values) -> str:
    return ", ".join(f"'{v}'" for v in values)
