"""Feature builds: immutable, versioned folders that every reader opens without locking anything.

    $NHIP_HOME/builds/
      20261202-031500-1a2b3c/   one build: profiles, identity map, set-aside identifiers, attributes,
                                 recent purchases, categories, the buyers' purchase summary (repeat),
                                 the vector snapshot, meta.json, READY
      current                    the id of the build serving reads, replaced atomically
      history/<id>.parquet       the merges, splits and renames each build recorded (kept for good)
      build.lock                 one build at a time

A build is written into a hidden folder and made visible in two steps that each replace one name:
the folder is renamed to its id (with `READY` inside), then `current` is rewritten to name it. A
process killed half-way leaves a hidden folder that no reader ever opens and the next build deletes.
Readers (the service, `nhip score send-time`, lookalikes, next products) read `current` once and keep the
build they opened, whatever is built meanwhile; the service polls `current` to follow new builds.
The last `keep` builds stay on disk (NHIP_KEEP_BUILDS), so a reader never loses its build while it
reads, and the rest are deleted.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path

import pandas as pd

from features.identity.graph import IdentityConfig
from features.store.manifest import fsync_dir, write_durably
from nhip.locks import exclusive_lock

CURRENT, READY, META, LOCK = "current", "READY", "meta.json", "build.lock"
TABLES = ("profiles", "identity", "set_aside", "attributes", "purchases", "categories", "repeat")
INDEXED = ("profiles", "repeat")  # one row per customer: read back indexed by customer_id


class BuildBusy(TimeoutError):
    """Another feature build is running and this one would not wait."""


@dataclass(frozen=True)
class BuildsConfig:
    """Where builds live and how many stay on disk (NHIP_KEEP_BUILDS)."""

    root: Path
    keep: int


@dataclass
class Build:
    """One finished, immutable build; its tables are read once and kept (it never changes)."""

    folder: Path
    _tables: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)

    @property
    def build_id(self) -> str:
        return self.folder.name

    @cached_property
    def meta(self) -> dict:
        return json.loads((self.folder / META).read_text(encoding="utf-8"))

    @property
    def as_of(self) -> datetime:
        return datetime.fromisoformat(self.meta["as_of"])

    @property
    def built_at(self) -> datetime:
        return datetime.fromisoformat(self.meta["built_at"])

    @property
    def identity_config(self) -> IdentityConfig | None:
        return IdentityConfig.from_params(self.meta.get("identity", {}))

    @property
    def vectors(self) -> Path | None:
        """The build's vector snapshot folder, or None for a build made without vectors."""
        folder = self.folder / "vectors"
        return folder if folder.is_dir() else None

    def table(self, name: str) -> pd.DataFrame:
        """One of `TABLES`: profiles and repeat indexed by customer_id; the others as stored."""
        if name not in self._tables:
            path = self.folder / f"{name}.parquet"
            if not path.exists():
                raise LookupError(f"feature build {self.build_id} has no {name} table (made by an older "
                                  "version): run `nhip refresh` or `nhip features build` for a new one")
            frame = pd.read_parquet(path)
            self._tables[name] = frame.set_index("customer_id") if name in INDEXED else frame
        return self._tables[name]


def _new_id() -> str:
    return f"{datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


class Builds:
    """The builds of one workspace (see the module docstring)."""

    def __init__(self, config: BuildsConfig):
        self.root, self.keep = config.root, config.keep

    def current(self) -> Build | None:
        try:
            name = (self.root / CURRENT).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        folder = self.root / name
        return Build(folder) if (folder / READY).exists() else None

    def open(self) -> Build:
        """The current build; LookupError before the first."""
        build = self.current()
        if build is None:
            raise LookupError("no feature build yet; run `nhip features build --as-of DATE` (or `nhip refresh`)")
        return build

    def all(self) -> list[Build]:
        """Every finished build on disk, newest first."""
        if not self.root.exists():
            return []
        return sorted((Build(p) for p in self.root.iterdir() if (p / READY).exists()),
                      key=lambda b: b.build_id, reverse=True)

    @contextmanager
    def lock(self, wait: float, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
        """One build (or erasure of builds) at a time; `wait` seconds at most, then `BuildBusy`."""
        with exclusive_lock(self.root / LOCK, wait, lambda: BuildBusy("another feature build is running"),
                            (lambda: on_wait("waiting for the feature build that is running")) if on_wait else None):
            yield

    def draft(self) -> Path:
        """A new hidden folder to write a build into (call under `lock`); half-built drafts of processes
        that died are removed first."""
        for stale in self.root.glob(".draft-*"):
            shutil.rmtree(stale, ignore_errors=True)
        folder = self.root / f".draft-{_new_id()}"
        folder.mkdir(parents=True)
        return folder

    def publish(self, draft: Path, meta: dict) -> Build:
        """Finish a draft: its meta and READY, the rename to its id, `current`, then old builds pruned."""
        build_id = draft.name.removeprefix(".draft-")
        write_durably(draft / META, json.dumps({"build_id": build_id, **meta}, indent=1, default=str).encode())
        (draft / READY).touch()
        fsync_dir(draft)
        folder = self.root / build_id
        os.replace(draft, folder)
        fsync_dir(self.root)
        write_durably(self.root / CURRENT, build_id.encode("utf-8"))
        self.prune()
        return Build(folder)

    def prune(self, keep: int | None = None) -> list[str]:
        """Delete all but the newest `keep` builds (never the current one); returns the ids deleted."""
        keep = self.keep if keep is None else keep
        current = self.current()
        gone = []
        for build in self.all()[max(keep, 1):]:
            if current is not None and build.build_id == current.build_id:
                continue
            shutil.rmtree(build.folder, ignore_errors=True)
            gone.append(build.build_id)
        return gone

    @property
    def history(self) -> Path:
        return self.root / "history"

    def record_changes(self, build_id: str, changes: pd.DataFrame) -> None:
        """Keep a build's merges, splits and renames beyond the build itself (`nhip identity merges`)."""
        if changes.empty:
            return
        self.history.mkdir(parents=True, exist_ok=True)
        temp = self.history / f".{build_id}.tmp"
        changes.to_parquet(temp, index=False)
        os.replace(temp, self.history / f"{build_id}.parquet")

    def changes(self) -> pd.DataFrame:
        """Every recorded merge, split and rename, newest first."""
        files = sorted(self.history.glob("*.parquet")) if self.history.exists() else []
        if not files:
            raise LookupError("no merges recorded yet; they are recorded by `nhip features build`")
        frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
        return frame.sort_values(["recorded_at", "kind", "kept_customer_id", "absorbed_customer_id"],
                                 ascending=[False, True, True, True], ignore_index=True)
