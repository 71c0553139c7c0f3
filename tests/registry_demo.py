"""A small demo shop with trained, registered models, built once per test session.

The champions learn from the events before `CUT`; the later events are kept aside in `late.jsonl` as
the "new data" a retrain receives. Tests that change the registry work on a clone of the workspace
(`clone_home`), so the shared one stays as built whatever order tests run in.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from nhip.clock import parse_as_of
from nhip.settings import Settings

CUT = "2026-08-16"  # events before this day are imported before training; the rest arrives later
PROPENSITY_AS_OFS = ("2026-06-15", "2026-07-15")  # two versions, both with observed label windows
SEND_TIME_AS_OF = "2026-08-15"


@dataclass
class TrainedDemo:
    home: Path
    data: Path  # the generator's output: events.jsonl, identities.csv, …
    late_events: Path

    @property
    def settings(self) -> Settings:
        return Settings(home=self.home)

    def env(self, home: Path | None = None) -> dict[str, str]:
        return {"NHIP_HOME": str(home or self.home), "HF_HUB_OFFLINE": "1"}


def _split_events(events: Path, early: Path, late: Path) -> None:
    """Split an export at `CUT` the way two consecutive exports of a shop would be."""
    from features.ingest.parsers.timestamps import parse_timestamps

    lines = events.read_text(encoding="utf-8").splitlines(keepends=True)
    ts = pd.Series([json.loads(line).get("ts") for line in lines], dtype=object)
    cut = pd.Timestamp(parse_as_of(CUT)).tz_localize("UTC")
    after = (parse_timestamps(ts) >= cut).fillna(False).to_numpy()
    early.write_text("".join(line for line, a in zip(lines, after) if not a), encoding="utf-8")
    late.write_text("".join(line for line, a in zip(lines, after) if a), encoding="utf-8")


def _build(root: Path) -> TrainedDemo:
    from features.ingest.importer import ingest_file
    from synthetic import demo_shop as demo_data
    from training.runner import train_propensity, train_send_time

    data = root / "data"
    paths = demo_data.write(demo_data.generate(customers=200, days=180, seed=7), data)
    early, late = root / "early.jsonl", root / "late.jsonl"
    _split_events(paths["events"], early, late)
    demo = TrainedDemo(root / "home", data, late)
    settings = demo.settings
    settings.ensure_dirs()
    ingest_file(early, settings.store_path)
    for as_of in PROPENSITY_AS_OFS:
        train_propensity(settings.training, parse_as_of(as_of), horizon_days=30)
    train_send_time(settings.training, parse_as_of(SEND_TIME_AS_OF))
    return demo


@pytest.fixture(scope="session")
def trained_demo(tmp_path_factory) -> TrainedDemo:
    """Built once per session (registered by tests/conftest.py) and kept in the session's base
    temporary folder; `ready` marks a finished build, so a half-built one is never reused."""
    root = tmp_path_factory.getbasetemp() / "trained-demo"
    ready = root / "ready"
    if not ready.exists():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        _build(root)
        ready.touch()
    return TrainedDemo(root / "home", root / "data", root / "late.jsonl")


def clone_home(source: Path, target: Path) -> Path:
    """Copy a workspace, pointing the copied MLflow database at the copied artifacts.

    MLflow stores absolute artifact locations; without the rewrite the clone would write new runs into
    the original's folders.
    """
    shutil.copytree(source, target)
    db = target / "mlruns" / "mlflow.db"
    with sqlite3.connect(db) as con:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for _, column, kind, *_ in con.execute(f'PRAGMA table_info("{table}")').fetchall():
                if any(t in kind.upper() for t in ("CHAR", "TEXT", "CLOB")) or not kind:
                    con.execute(f'UPDATE "{table}" SET "{column}" = replace("{column}", ?, ?) '
                                f'WHERE "{column}" LIKE ?', [str(source), str(target), f"%{source}%"])
    return target
