"""Points in time. Internally every instant is a naive UTC datetime, like the event store's `ts`."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pandas as pd

LOCAL_TZ = "Asia/Ho_Chi_Minh"


def parse_as_of(value: str | date | datetime | pd.Timestamp) -> datetime:
    """An as-of instant as naive UTC.

    A bare date means the start of that day in Vietnam: `--as-of 2026-08-29` sees every event up to
    2026-08-29 00:00 +07:00 and nothing of that day itself. A time without offset is Vietnam time.
    """
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize(LOCAL_TZ)
    return stamp.tz_convert("UTC").tz_localize(None).to_pydatetime()


def to_local(value: datetime) -> pd.Timestamp:
    """A naive-UTC instant shown in Vietnam time."""
    return pd.Timestamp(value).tz_localize("UTC").tz_convert(LOCAL_TZ)


def days(n: float) -> timedelta:
    return timedelta(days=n)


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)
