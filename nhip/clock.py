"""Vietnam's clock: the one definition of the shop's time zone, local hours and hours of the week.

Every instant inside Nhịp is a naive UTC datetime, like the event store's `ts`. People live in Vietnam
time (Asia/Ho_Chi_Minh, UTC+7, no daylight saving since 1975), so a fixed offset converts between the
two; SQL uses the same offset rather than DuckDB's time-zone extension. Hour of week 0 is Monday
00:00–01:00 local time, 167 is Sunday 23:00–24:00.

Every stage imports these from here, so the offset and the numbering of the week exist once.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import numpy as np
import pandas as pd

LOCAL_TZ = "Asia/Ho_Chi_Minh"
LOCAL_OFFSET_HOURS = 7
LOCAL_OFFSET = timedelta(hours=LOCAL_OFFSET_HOURS)
# For code that writes local times itself (the synthetic shop); equal to LOCAL_TZ at every instant.
LOCAL_FIXED_TZ = timezone(LOCAL_OFFSET, LOCAL_TZ)
HOURS_PER_DAY = 24
HOURS_PER_WEEK = 7 * HOURS_PER_DAY


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


def local_timestamp(value: datetime | str) -> pd.Timestamp:
    """A tz-aware Vietnam time from what a caller gave: naive input is taken as Vietnam time."""
    stamp = pd.Timestamp(value)
    return stamp.tz_localize(LOCAL_TZ) if stamp.tzinfo is None else stamp.tz_convert(LOCAL_TZ)


def utcnow() -> datetime:
    """Now, as naive UTC like every instant in the store."""
    return datetime.now(UTC).replace(tzinfo=None)


def local_text(ts) -> str:
    """A naive-UTC instant as `YYYY-MM-DD HH:MM:SS +07:00`, or `?` when missing."""
    if ts is None or (isinstance(ts, float) and np.isnan(ts)):
        return "?"
    return (pd.Timestamp(ts) + LOCAL_OFFSET).strftime(f"%Y-%m-%d %H:%M:%S +{LOCAL_OFFSET_HOURS:02d}:00")


def local_iso(ts: pd.Series) -> pd.Series:
    """Naive-UTC instants as ISO 8601 Vietnam times with their offset (`2026-03-01T18:00:00+07:00`)."""
    local = pd.to_datetime(ts) + LOCAL_OFFSET
    return local.dt.strftime(f"%Y-%m-%dT%H:%M:%S+{LOCAL_OFFSET_HOURS:02d}:00").astype(object)


def hour_of_week(local: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """Monday 00:00 = 0 … Sunday 23:00 = 167, from local (Vietnam) times."""
    local = pd.DatetimeIndex(local)
    return (local.dayofweek * HOURS_PER_DAY + local.hour).to_numpy()


def sql_local(ts: str) -> str:
    """SQL: the Vietnam wall-clock time of a naive-UTC TIMESTAMP expression."""
    return f"({ts} + INTERVAL {LOCAL_OFFSET_HOURS} HOUR)"


def sql_hour_of_week(ts: str) -> str:
    """SQL: the local hour of week (0–167, as `hour_of_week`) of a naive-UTC TIMESTAMP expression."""
    local = sql_local(ts)
    return f"((isodow({local}) - 1) * {HOURS_PER_DAY} + hour({local}))"
