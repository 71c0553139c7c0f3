"""The canonical event format (shared/brief/events.md) as Python constants.

This is a public contract: importers map every source onto these names, and the event store keeps them.
"""

from __future__ import annotations

IDENTIFIER_FIELDS: tuple[str, ...] = (
    "phone",
    "email",
    "zalo_user_id",
    "zalo_app_user_id",
    "fb_psid",
    "pos_customer_id",
    "anonymous_id",
    "external_id",
)

KNOWN_CHANNELS: tuple[str, ...] = (
    "web", "app", "zalo_oa", "zalo_mini_app", "facebook", "email", "sms", "pos",
)

KNOWN_TYPES: tuple[str, ...] = (
    "page_view", "product_view", "add_to_cart", "purchase",
    "message_sent", "message_delivered", "message_opened", "message_clicked", "message_replied",
    "follow", "unfollow", "subscribe", "unsubscribe", "consent_granted", "consent_revoked", "identify",
)

# Every flat column of the canonical format, in file order. `properties` holds any other keys.
CANONICAL_FIELDS: tuple[str, ...] = (
    "event_id", "ts", "channel", "type", *IDENTIFIER_FIELDS, "name", "amount", "currency",
    "product_id", "product_name", "category", "quantity", "campaign_id", "message_id", "properties",
)

# `zalo_zns`: Zalo template messages (ZNS), sent by phone through the OA; events from the ZNS delivery logs.
MESSAGE_CHANNELS: tuple[str, ...] = ("zalo_oa", "email", "sms", "facebook", "zalo_mini_app", "app", "zalo_zns")
