"""The manifest: which immutable segment files make up each table of the store, right now.

It is the store's commit point. A writer writes new segment files first (invisible: no manifest names
them), then replaces `manifest.json` in one `os.replace`; a reader reads the manifest once and sees
exactly the segments of that version, however many commits follow. Files are fsynced before the rename
and the folder after it, so a commit that returned survives a power cut.

Readers pin the version they read (`pin`): a shared `flock` on `pins/<version>`. A file a later version
no longer names (replaced by compaction or erasure) is deleted only when no version older than its
retirement is pinned, so a training run that reads for an hour never loses a file under its feet, and a
reader that crashed releases its pin with its process.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from features.store.tables import TABLES

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Segment:
    """One immutable Parquet file of a table: its path under the store, rows, the commit (batch) that
    wrote it, and whether its rows are new to the store (False for rows rewritten by compaction or
    erasure, whose keys the ledger has already)."""

    name: str
    rows: int
    batch: int
    fresh: bool = True


@dataclass(frozen=True)
class Manifest:
    version: int = 0
    last_batch: int = 0
    segments: dict[str, tuple[Segment, ...]] = field(default_factory=lambda: {t: () for t in TABLES})

    def files(self, table: str) -> list[str]:
        return [s.name for s in self.segments.get(table, ())]

    def as_json(self) -> str:
        return json.dumps({"version": self.version, "last_batch": self.last_batch,
                           "segments": {t: [s.__dict__ for s in segs] for t, segs in self.segments.items()}},
                          indent=1)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        segments = {t: tuple(Segment(**s) for s in data["segments"].get(t, [])) for t in TABLES}
        return cls(int(data["version"]), int(data["last_batch"]), segments)


def read_manifest(root: Path) -> Manifest | None:
    """The current manifest, or None for a store nothing was ever written to."""
    try:
        return Manifest.from_json((root / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that after a crash it is either the old content or all of the new."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
    fsync_dir(path.parent)


def write_manifest(root: Path, manifest: Manifest) -> None:
    write_durably(root / MANIFEST, manifest.as_json().encode("utf-8"))


class Pin:
    """A reader's hold on one manifest version (see the module docstring); release it with `close`."""

    def __init__(self, root: Path):
        pins = root / "pins"
        pins.mkdir(exist_ok=True)
        for _ in range(1000):
            manifest = read_manifest(root)
            if manifest is None:
                raise FileNotFoundError(root / MANIFEST)
            path = pins / str(manifest.version)
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
            fcntl.flock(fd, fcntl.LOCK_SH)
            again = read_manifest(root)
            if again is not None and again.version == manifest.version and _same_file(fd, path):
                self.manifest, self._fd = manifest, fd
                return
            # A commit came between reading and pinning (pin the newer version), or a writer removed
            # the pin file as unheld between its creation and our lock (pin a file that exists).
            os.close(fd)
        raise RuntimeError("the store's manifest changes faster than it can be read")

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def pinned_versions(root: Path, below: int) -> set[int]:
    """Versions under `below` some reader still pins; the pins nobody holds are removed."""
    held = set()
    for path in (root / "pins").glob("*"):
        try:
            version = int(path.name)
        except ValueError:
            continue
        if version >= below:
            continue
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:  # removed meanwhile by another writer's sweep
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held.add(version)
        else:
            path.unlink(missing_ok=True)
        finally:
            os.close(fd)
    return held
