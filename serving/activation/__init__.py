"""Activation decisions: audiences, campaign plans under the contact policy, and exports to ad platforms.

The parts, in the order a marketer uses them:
- `rules`: the audience rule language (`propensity_bucket == 'High' and recency_days <= 90`);
- `context`: the build, scores and consent state every decision reads, and the documented columns;
- `audiences`: named audiences and their size history per build;
- `consent`: who may be messaged on which channel now, and the suppression list of erased people;
- `policy`: the contact policy (TOML), with Vietnamese defaults, and the check every plan passes;
- `planner`: the channel and hour per member with the most expected response per VND;
- `exports`: CSV, Meta, Google Customer Match and ZNS files; `audit` the log of every export.

This module is also the notebook API for them. Each function reads the workspace's settings (`NHIP_*`, or
the `settings` passed in), as `features` does; the CLI calls the same functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from nhip.settings import Settings
    from serving.activation.audiences import Audience
    from serving.activation.audit import ExportRecord
    from serving.activation.planner import Plan

__all__ = ["create_audience", "list_audiences", "audience_members", "audience_sizes", "record_sizes", "plan_campaign",
           "next_best_action", "export_audience"]


def _settings(settings: Settings | None) -> Settings:
    from nhip.settings import get_settings

    return settings or get_settings()


def _book(settings: Settings):
    from serving.activation.audiences import AudienceBook

    return AudienceBook(settings.activation.root)


def create_audience(name: str, where: str | None = None, ids: list[str] | None = None, id_type: str | None = None,
                    replace: bool = False, created_by: str = "", settings: Settings | None = None) -> Audience:
    """Define audience `name` by a rule (`where`, see `serving.activation.rules`) or a fixed list (`ids`:
    customer ids or identifiers of type `id_type`, default any)."""
    return _book(_settings(settings)).create(name, where, ids, id_type, created_by, replace)


def list_audiences(settings: Settings | None = None) -> pd.DataFrame:
    """Every audience with its rule and its size in the current build."""
    import pandas as pd

    from serving.activation.context import open_context

    settings = _settings(settings)
    book = _book(settings)
    rows = []
    with open_context(settings.activation) as context:
        sizes = book.record_sizes(context)
        for audience in book.list():
            rows.append({"audience": audience.name, "rule": audience.describe(), "size": sizes[audience.name],
                         "build_id": context.build.build_id, "created_at": audience.created_at})
    return pd.DataFrame(rows, columns=["audience", "rule", "size", "build_id", "created_at"])


def audience_members(name: str, settings: Settings | None = None) -> pd.DataFrame:
    """The members of audience `name` in the current build, with the documented columns."""
    from serving.activation.context import open_context

    settings = _settings(settings)
    with open_context(settings.activation) as context:
        return context.frame.loc[_book(settings).members(name, context)]


def audience_sizes(name: str, settings: Settings | None = None) -> pd.DataFrame:
    """The size of audience `name` at each feature build since it was defined."""
    settings = _settings(settings)
    book = _book(settings)
    book.get(name)
    return book.sizes(name)


def record_sizes(settings: Settings | None = None) -> dict[str, int | str]:
    """Compute every audience on the current build and append the sizes to the history; the CLI calls it
    after each feature build and refresh."""
    from serving.activation.context import open_context

    settings = _settings(settings)
    book = _book(settings)
    if not book.list():
        return {}
    with open_context(settings.activation) as context:
        return book.record_sizes(context)


def plan_campaign(name: str, audience: str, channels: list[str], start, end, budget_vnd: float | None = None,
                  policy: Path | None = None, settings: Settings | None = None) -> Plan:
    """Plan campaign `name` for audience `audience` over [start, end) (local times; naive = Vietnam) and
    record it in the workspace (`activation/plans/NAME/`)."""
    from nhip.clock import local_timestamp
    from serving.activation.campaigns import record_plan
    from serving.activation.context import open_context
    from serving.activation.planner import plan_campaign as make_plan

    settings = _settings(settings)
    config = settings.activation
    book = _book(settings)
    with open_context(config) as context:
        members = book.members(audience, context)
        plan = make_plan(context, members, tuple(channels), local_timestamp(start), local_timestamp(end),
                         config.policy(policy), config.quiet, budget_vnd)
    record_plan(config.root, name, audience, plan)
    return plan


def next_best_action(customer_id: str, channels: list[str], start, end, policy: Path | None = None,
                     settings: Settings | None = None) -> dict:
    """The planner's decision for one customer of the current build (as `POST /next_best_action`)."""
    from nhip.clock import local_timestamp
    from serving.activation.context import open_context
    from serving.activation.planner import decide_one

    settings = _settings(settings)
    config = settings.activation
    with open_context(config) as context:
        return decide_one(context, customer_id, tuple(channels), local_timestamp(start), local_timestamp(end),
                          config.policy(policy), config.quiet)


def export_audience(name: str, channel: str, fmt: str, output: Path, template: Path | None = None,
                    actor: str | None = None, settings: Settings | None = None) -> ExportRecord:
    """Write audience `name` for `channel` in format `fmt` (csv, meta, google, zns) to `output`: members
    consenting to the channel now, erased people never, one audit row per export."""
    from serving.activation.audit import export_members
    from serving.activation.context import open_context

    settings = _settings(settings)
    config = settings.activation
    book = _book(settings)
    with open_context(config) as context:
        members = book.members(name, context)
        return export_members(config.root, context, name, members, channel, fmt, output, template, actor)
