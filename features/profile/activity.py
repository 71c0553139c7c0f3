"""When each customer is active: counts by local hour of the week per channel, smoothed.

Only what the customer did counts (not `message_sent`/`message_delivered`, nor a mail client's automatic
open): an open at 21:00 says the customer reads at 21:00, a send at 09:00 says when the shop sent, and an
"open" one second after delivery says only that the mail client prefetched the images (Apple Mail Privacy
Protection and the like; see `MACHINE_OPEN_SECONDS`). Local time is UTC +7 h
(`nhip.clock`); hour of week 0 is Monday 00:00–01:00 local, 167 Sunday 23:00.

Smoothing. A person who opened at 20:10 on three Tuesdays is probably also reachable at 19:xx and 21:xx;
raw counts over 168 cells are too sparse to show that. Each event is spread over its hour and the
neighbouring ones with the kernel `SMOOTHING` (¼, ½, ¼), circularly (Sunday 23:00 neighbours Monday
00:00), so a row still sums to the customer's number of events on that channel.
"""

from __future__ import annotations

import pandas as pd

from features.identity.events import ResolvedEvents
from features.profile.windows import ACTIVE, quoted
from features.schema import KNOWN_CHANNELS
from nhip.clock import HOURS_PER_WEEK, sql_hour_of_week, sql_local

SMOOTHING: tuple[float, ...] = (0.25, 0.5, 0.25)
# No person opens a message within two seconds of its arrival; a mail client that fetches every message's
# images on delivery does. Such opens say nothing about when, or whether, the customer reads.
MACHINE_OPEN_SECONDS = 2


def _machine_opens(source: str) -> str:
    """SQL: event_key of every open that came within `MACHINE_OPEN_SECONDS` of its message's arrival (the
    delivery, or the send when no delivery was logged)."""
    return f"""
        SELECT o.event_key FROM {source} o JOIN (
            SELECT message_id, max(ts) AS arrived FROM {source}
            WHERE type IN ('message_sent', 'message_delivered') AND message_id IS NOT NULL GROUP BY ALL
        ) a USING (message_id)
        WHERE o.type = 'message_opened'
          AND o.ts <= a.arrived + INTERVAL {MACHINE_OPEN_SECONDS} SECOND"""


def activity_by_hour(
    events: ResolvedEvents,
    channels: tuple[str, ...] = KNOWN_CHANNELS,
    smoothing: tuple[float, ...] = SMOOTHING,
) -> pd.DataFrame:
    """One row per (customer_id, channel) with any own event there by as_of: n_events and `counts`, a
    168-long array of smoothed event counts by local hour of week (see the module docstring).

    `smoothing` is an odd-length kernel centred on the event's hour; `(1.0,)` gives raw counts.
    """
    if len(smoothing) % 2 != 1:
        raise ValueError("smoothing needs an odd number of weights, centred on the event's hour")
    half = len(smoothing) // 2
    kernel = ", ".join(f"({i - half}, {w!r}::DOUBLE)" for i, w in enumerate(smoothing))
    source = events.source
    return events.con.execute(
        f"""
        WITH hours AS (
            SELECT customer_id, channel, {sql_hour_of_week("ts")} AS hour_of_week, count(*) AS n
            FROM {source} WHERE {ACTIVE} AND channel IN ({quoted(channels)})
              AND event_key NOT IN ({_machine_opens(source)})
            GROUP BY ALL
        ), spread AS (
            SELECT customer_id, channel, (hour_of_week + k.shift + {HOURS_PER_WEEK}) % {HOURS_PER_WEEK} AS hour_of_week,
                   sum(n * k.weight) AS value
            FROM hours CROSS JOIN (VALUES {kernel}) k(shift, weight)
            GROUP BY ALL
        ), cells AS (
            SELECT customer_id, channel, map(list(hour_of_week), list(value)) AS m FROM spread GROUP BY ALL
        )
        SELECT customer_id, channel, totals.n_events,
               list_transform(range({HOURS_PER_WEEK}), lambda h: coalesce(m[h], 0.0)) AS counts
        FROM cells JOIN (SELECT customer_id, channel, sum(n) AS n_events FROM hours GROUP BY ALL) totals
          USING (customer_id, channel)
        ORDER BY customer_id, channel
        """
    ).df()


def message_responses(events: ResolvedEvents) -> pd.DataFrame:
    """One row per message sent by as_of: customer_id, channel, ts (naive UTC), hour_of_week (local hour of
    week of the send), opened (1 when the customer opened or clicked it by as_of) and open_hour_of_week
    (local hour of week of that first response, as a float with minutes, NaN when unopened).

    Machine opens do not count: a message only the mail client "opened" was not read. The time of the
    response is kept because it says when the customer reads, which the send time does not: a message
    sent at 9:00 and opened at 20:10 was read at 20:10.
    """
    source = events.source
    return events.con.execute(
        f"""
        WITH sent AS (
            SELECT customer_id, channel, message_id, ts FROM {source} WHERE type = 'message_sent'
        ), read AS (
            SELECT message_id, min(ts) AS ts FROM {source}
            WHERE type IN ('message_opened', 'message_clicked') AND message_id IS NOT NULL
              AND event_key NOT IN ({_machine_opens(source)})
            GROUP BY ALL
        )
        SELECT s.customer_id, s.channel, s.ts, {sql_hour_of_week("s.ts")} AS hour_of_week,
               (r.message_id IS NOT NULL)::INTEGER AS opened,
               {sql_hour_of_week("r.ts")} + minute({sql_local('r.ts')}) / 60.0 AS open_hour_of_week
        FROM sent s LEFT JOIN read r USING (message_id)
        ORDER BY s.ts, s.customer_id
        """
    ).df()
