"""Recorded campaign plans: each plan is kept in the workspace (`activation/plans/NAME/`), so what was
planned can be compared later with what was sent and what customers did.

`plan.parquet` holds the plan's rows without the identifier columns (customer ids are enough to join
back to the build); `plan.json` the window, channels, policy, budget, versions and summary.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pandas as pd

from nhip.clock import utcnow
from serving.activation.planner import Plan

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
IDENTIFIER_COLUMNS = ("phone", "email", "zalo_user_id")


class CampaignError(LookupError):
    """A campaign name that cannot be used, or a campaign with no recorded plan."""


def _folder(root: Path, name: str) -> Path:
    if not _NAME.match(name):
        raise CampaignError(f"campaign name {name!r}: use letters, digits, '.', '-' and '_' (at most 64)")
    return root / "plans" / name


def record_plan(root: Path, name: str, audience: str, plan: Plan) -> Path:
    """Keep `plan` as campaign `name`'s plan (a new plan replaces the old one, atomically)."""
    folder = _folder(root, name)
    folder.mkdir(parents=True, exist_ok=True)
    rows = plan.rows.drop(columns=[c for c in IDENTIFIER_COLUMNS if c in plan.rows.columns])
    tmp = folder / "plan.parquet.tmp"
    rows.to_parquet(tmp, index=False)
    os.replace(tmp, folder / "plan.parquet")
    meta = {"campaign": name, "audience": audience, "planned_at": utcnow().isoformat(timespec="seconds"),
            "from": plan.window[0].isoformat(), "to": plan.window[1].isoformat(), "channels": list(plan.channels),
            "policy": plan.policy, "budget_vnd": plan.budget_vnd, "versions": plan.versions,
            "summary": plan.summary()}
    tmp = folder / "plan.json.tmp"
    tmp.write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(tmp, folder / "plan.json")
    return folder


def recorded_plan(root: Path, name: str) -> tuple[dict, pd.DataFrame]:
    """(meta, rows) of campaign `name`'s recorded plan."""
    folder = _folder(root, name)
    if not (folder / "plan.json").exists():
        raise CampaignError(f"no recorded plan for campaign {name!r}; run `nhip campaign plan --name {name} …`")
    return json.loads((folder / "plan.json").read_text(encoding="utf-8")), pd.read_parquet(folder / "plan.parquet")
