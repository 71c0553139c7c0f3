"""Shared fixtures: an isolated workspace per test, and tiny hand-written event files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from features.identity.graph import IdentityConfig
from models.send_time import QuietHours
from nhip.settings import Settings

# The trained demo workspace (`trained_demo`), one per session, for every module that asks for it.
pytest_plugins = ("tests.registry_demo",)

# The identity configuration a workspace gets by default (NHIP_IDENTITY_MAX_LINKS unset), for tests that
# call library functions directly.
IDENTITY = IdentityConfig(max_links=Settings.model_fields["identity_max_links"].default)
# The default quiet hours (NHIP_QUIET_START / NHIP_QUIET_END unset), 21:30–08:00.
QUIET = QuietHours.parse(Settings.model_fields["quiet_start"].default, Settings.model_fields["quiet_end"].default)


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """NHIP_HOME in a temporary folder: the event store, Qdrant and MLflow all live under it."""
    home = tmp_path / "home"
    monkeypatch.setenv("NHIP_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("NHIP_MLFLOW_URI", raising=False)
    monkeypatch.delenv("NHIP_QDRANT_URL", raising=False)
    from nhip.settings import get_settings

    return get_settings()


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


TINY_EVENTS = [
    # Lan: web cookie, identifies with email, buys at the POS with her phone, follows the OA with it.
    {"event_id": "w1", "ts": "2026-03-01T10:00:00+07:00", "channel": "web", "type": "page_view",
     "anonymous_id": "anon-lan"},
    {"event_id": "w2", "ts": "2026-03-01T10:05:00+07:00", "channel": "web", "type": "identify",
     "anonymous_id": "anon-lan", "email": " Lan.Nguyen@Example.com ", "name": "Nguyễn Thị Lan"},
    {"event_id": "p1", "ts": "01/03/2026 18:00", "channel": "pos", "type": "purchase",
     "pos_customer_id": "KH001", "phone": "0912 345 678", "email": "lan.nguyen@example.com",
     "amount": "1.200.000đ", "product_id": "sp1", "product_name": "Sữa rửa mặt", "category": "Mỹ phẩm"},
    {"event_id": "z1", "ts": "2026-03-02T20:00:00+07:00", "channel": "zalo_oa", "type": "follow",
     "zalo_user_id": "z-lan", "phone": "+84 912 345 678"},
    # Minh: only Zalo, one message sent and opened.
    {"event_id": "z2", "ts": "2026-03-03T09:00:00+07:00", "channel": "zalo_oa", "type": "message_sent",
     "zalo_user_id": "z-minh", "message_id": "m1", "campaign_id": "c1"},
    {"event_id": "z3", "ts": "2026-03-03T20:30:00+07:00", "channel": "zalo_oa", "type": "message_opened",
     "zalo_user_id": "z-minh", "message_id": "m1", "campaign_id": "c1"},
]


def profiles_at(con, as_of):
    """The wide profiles at `as_of`, customers resolved with the default identity configuration."""
    from features.identity.events import resolve_events
    from features.profile.wide import build_profiles

    with resolve_events(con, as_of, IDENTITY) as events:
        return build_profiles(events)
