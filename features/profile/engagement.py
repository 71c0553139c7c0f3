"""Engagement with the shop's messages per channel: sends, opens, clicks, replies, response rates and
the time a customer takes to open.

Reactions are tied to the send they answer through `message_id` (shared/brief/events.md); a message
belongs to the customer and channel of its `message_sent`. Only events up to `as_of` exist here, so an
open that comes after `as_of` leaves the message unopened.
"""

from __future__ import annotations

from features.profile.windows import n_events, quoted, within
from features.schema import MESSAGE_CHANNELS

ENGAGEMENT_DAYS = 90
REACTIONS: tuple[str, ...] = ("opened", "clicked", "replied")
RATE_NAMES = {"opened": "open", "clicked": "click", "replied": "reply"}
_MESSAGE_TYPES = ("message_sent", *(f"message_{r}" for r in REACTIONS))


def engagement_count_columns(channels: tuple[str, ...] = MESSAGE_CHANNELS) -> list[str]:
    """n_messages_{sent,delivered,opened,clicked,replied}_90d_<ch>: events in the last 90 days (one pass over
    the event cells, no join). Deliveries tell the planner whether a channel reaches a customer at all
    (`serving.activation.consent.reach`): a phone without Zalo never gets a ZNS delivered."""
    return [
        n_events(f"type = 'message_{kind}' AND channel = '{ch}' AND {within(ENGAGEMENT_DAYS)}")
        + f" AS n_messages_{kind}_{ENGAGEMENT_DAYS}d_{ch}"
        for ch in channels
        for kind in ("sent", "delivered", *REACTIONS)
    ]


def engagement_rates_sql(source: str, channels: tuple[str, ...] = MESSAGE_CHANNELS) -> str:
    """Per customer, over the messages sent to them:

    - {open,click,reply}_rate_90d_<ch>: the share of messages sent in the last 90 days that were opened
      (an open or a click: a click means it was read), clicked, replied to — by as_of. NULL without sends.
    - hours_to_open_<ch>, hours_to_open: median hours from a send to the first `message_opened` of the
      same message, over every message sent and opened by as_of (per channel, and over all channels).
    """
    recent = f"sent_at > $as_of - INTERVAL {ENGAGEMENT_DAYS} DAY"
    delay = "date_diff('second', sent_at, opened_at) / 3600.0"
    columns = []
    for ch in channels:
        on = f"channel = '{ch}'"
        columns += [f"avg({r}::DOUBLE) FILTER (WHERE {on} AND {recent}) "
                    f"AS {RATE_NAMES[r]}_rate_{ENGAGEMENT_DAYS}d_{ch}" for r in REACTIONS]
        columns.append(f"median({delay}) FILTER (WHERE {on} AND opened_at >= sent_at) AS hours_to_open_{ch}")
    columns.append(f"median({delay}) FILTER (WHERE opened_at >= sent_at) AS hours_to_open")
    return f"""
        WITH messages AS (
            SELECT message_id,
                   arg_min(customer_id, (ts, customer_id, channel)) FILTER (WHERE type = 'message_sent') AS customer_id,
                   arg_min(channel, (ts, customer_id, channel)) FILTER (WHERE type = 'message_sent') AS channel,
                   min(ts) FILTER (WHERE type = 'message_sent') AS sent_at,
                   min(ts) FILTER (WHERE type = 'message_opened') AS opened_at,
                   bool_or(type IN ('message_opened', 'message_clicked')) AS opened,
                   bool_or(type = 'message_clicked') AS clicked,
                   bool_or(type = 'message_replied') AS replied
            FROM {source}
            WHERE message_id IS NOT NULL AND type IN ({quoted(_MESSAGE_TYPES)})
            GROUP BY message_id
        )
        SELECT customer_id, {", ".join(columns)}
        FROM messages WHERE sent_at IS NOT NULL GROUP BY customer_id
    """
