"""Exports of an audience to a file, each with a row in the export audit.

An export contains only members who may be contacted on the export's channel now (`consent.reach`:
consent in the build, no withdrawal since, not erased) and writes one audit row: who, when, which audience,
channel and format, how many rows, from which build. The audit holds no personal data, and the file is the
only place the identifiers go.
"""

from __future__ import annotations

import csv
import getpass
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from nhip.clock import utcnow
from nhip.locks import exclusive_lock
from serving.activation.context import ActivationContext
from serving.activation.exports import FORMATS, ExportError, export_rows, load_zns_template
from serving.activation.policy import PLAN_CHANNELS

AUDIT_FILE = "exports_audit.csv"


@dataclass(frozen=True)
class ExportRecord:
    """One audit row."""

    exported_at: str
    actor: str
    audience: str
    channel: str
    format: str
    rows: int
    members: int  # the audience's members before consent
    build_id: str
    file: str  # the file's name only: where it went is the user's business, and a path may name a person


def _names(context: ActivationContext) -> pd.Series:
    """Per customer, the name written on most of their events."""
    attributes = context.build.table("attributes")
    names = attributes[attributes["attribute"] == "name"]
    if names.empty:
        return pd.Series(dtype=object)
    best = names.sort_values(["customer_id", "n_events", "last_seen"], ascending=[True, False, False])
    return best.drop_duplicates("customer_id").set_index("customer_id")["value"]


def export_members(root: Path, context: ActivationContext, audience: str, members: pd.Index, channel: str,
                   fmt: str, output: Path, template: Path | None, actor: str | None) -> ExportRecord:
    """Write `members` of `audience` who may be contacted on `channel` to `output` in `fmt`; audit it."""
    if channel not in PLAN_CHANNELS:
        raise ExportError(f"channel {channel!r}: exports use {', '.join(PLAN_CHANNELS)}")
    if fmt not in FORMATS:
        raise ExportError(f"format {fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt == "zns" and channel != "zalo_zns":
        raise ExportError("a zns export goes by ZNS: use --channel zalo_zns")
    if fmt == "zns" and template is None:
        raise ExportError("a zns export needs --template FILE (see serving/activation/zns_template.example.toml)")
    zns = load_zns_template(template) if fmt == "zns" else None
    allowed = context.reach.allowed[channel]
    keep = [m for m in members if m in allowed.index and bool(allowed[m])]
    ids = context.reach.identifiers.reindex(keep)
    frame = context.frame.reindex(keep)
    table = pd.DataFrame({
        "customer_id": pd.Series(keep, dtype=object),
        "email": ids["email"].to_numpy() if "email" in ids else None,
        "phone": context.reach.address["sms"].reindex(keep).to_numpy(),
        "name": _names(context).reindex(keep).to_numpy(),
    })
    for column in frame.columns:
        table[column] = frame[column].to_numpy()
    rows = export_rows(table, fmt, zns)
    output.parent.mkdir(parents=True, exist_ok=True)
    rows.to_csv(output, index=False)
    record = ExportRecord(utcnow().isoformat(timespec="seconds"), actor or os.environ.get("NHIP_ACTOR")
                          or getpass.getuser(), audience, channel, fmt, len(rows), len(members),
                          context.build.build_id, output.name)
    _append(root, record)
    return record


def _append(root: Path, record: ExportRecord) -> None:
    root.mkdir(parents=True, exist_ok=True)
    path = root / AUDIT_FILE
    with exclusive_lock(root / ".audit.lock", wait=30, busy=lambda: ExportError("the export audit is busy")):
        new = not path.exists()
        with path.open("a", newline="", encoding="utf-8") as out:
            writer = csv.DictWriter(out, fieldnames=list(asdict(record)))
            if new:
                writer.writeheader()
            writer.writerow(asdict(record))


def export_audit(root: Path) -> pd.DataFrame:
    """Every export so far, oldest first."""
    path = root / AUDIT_FILE
    if not path.exists():
        return pd.DataFrame(columns=list(ExportRecord.__dataclass_fields__))
    return pd.read_csv(path, dtype=str)
