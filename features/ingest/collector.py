"""The HTTP collector: webhooks and SDKs `POST /events` batches of canonical events into the event store.

    POST /events          X-API-Key: <NHIP_COLLECTOR_API_KEY>
    [{"event_id": "z-1", "ts": "2026-03-02T20:00:00+07:00", "channel": "zalo_oa", "type": "follow",
      "zalo_user_id": "z-lan"}, ...]                      (or {"events": [...]})
    200 {"accepted": 1, "duplicates": 0, "rejected": 0,
         "results": [{"index": 0, "status": "accepted", "reason": null}]}
    GET /healthz          200 {"status": "ok"} (no key needed)

Every item gets one answer, in the order sent: `accepted` (stored), `duplicate` (its key — `channel` and
`event_id`, or the content when there is no id — is already stored or came earlier in the batch; a retried
webhook is therefore harmless) or `rejected` with the reason, the item's raw JSON going to quarantine like a
bad row of a file. accepted + duplicates + rejected = items sent, always. Items are normalised exactly as
file imports are (`features.ingest.importer.import_rows`), and each batch is stored in one DuckDB transaction with a
row in `imports` (source `collector` or `collector:<source>` from the `?source=` query parameter): a batch
is stored whole or, on a server error (5xx), not at all, and can simply be sent again.

Errors for the whole request: 401 without a valid `X-API-Key`; 400 when the body is not JSON or not a list
of events (or `{"events": [...]}`); 413 above `max_batch` items (default 5,000) or `max_body_bytes`.

One writer: DuckDB lets one process open the store for writing, and while it does no other process can
open it at all, not even read-only. The collector opens one connection at start-up and keeps it, writing
batches one at a time (a lock serialises them; requests are parsed concurrently). So while the collector
runs, `nhip ingest` and every other command that opens the store fail with a lock error: send files through
the collector, or stop it for imports, feature builds, training and scoring.

The API key comes from `NHIP_COLLECTOR_API_KEY`; `create_app` refuses to build the app without one.
Run it with `nhip collect [--host 127.0.0.1] [--port 8100]`.
"""

from __future__ import annotations

import hmac
import json
import re
import threading
from collections.abc import Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from features.ingest.importer import import_rows
from features.ingest.rows import RawRows
from features.store import connect

__all__ = ["CollectorConfig", "CollectorConfigError", "create_app", "MAX_BATCH", "MAX_BODY_BYTES"]

MAX_BATCH = 5_000
MAX_BODY_BYTES = 32 * 1024 * 1024
_SOURCE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_STATUS = {"accepted": "accepted", "duplicate": "duplicate", "quarantined": "rejected"}  # RowOutcome.status


class CollectorConfigError(RuntimeError):
    """The collector cannot start as configured (no API key)."""


class _RawJson(Sequence):
    """Items' JSON text, made only for the items that are read (the rejected ones, for quarantine)."""

    def __init__(self, items: list) -> None:
        self._items = items

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [_dump(item) for item in self._items[index]]
        return _dump(self._items[index])


def _dump(item: object) -> str:
    return json.dumps(item, ensure_ascii=False, default=str)


def _rows(items: list) -> RawRows:
    """RawRows from a batch: objects are records (line = index in the batch); anything else is unreadable."""
    records, lines, unreadable = [], [], []
    for i, item in enumerate(items):
        if isinstance(item, dict):
            records.append(item)
            lines.append(i)
        else:
            unreadable.append((i, _dump(item), f"not a JSON object ({_json_type(item)})"))
    objects = records if len(records) == len(items) else [items[i] for i in lines]
    return RawRows(records, lines, _RawJson(objects), unreadable)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "array"}.get(
        type(value), type(value).__name__)


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status)


@dataclass(frozen=True)
class CollectorConfig:
    """What the collector needs: the store it writes and the key clients must send (NHIP_COLLECTOR_API_KEY)."""

    store_path: Path
    api_key: str | None


def check_store(config: CollectorConfig) -> None:
    """Open the store for writing and close it again, so that a locked or unwritable store stops
    `nhip collect` with one line before the server starts, not inside its start-up."""
    connect(config.store_path, create=True).close()


def create_app(config: CollectorConfig, *, max_batch: int = MAX_BATCH,
               max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    """The collector app for `config`; see the module docstring.

    Raises `CollectorConfigError` when no API key is configured. The store is opened when the app starts
    (lifespan), not here.
    """
    key = (config.api_key or "").strip()
    if not key:
        raise CollectorConfigError(
            "the collector needs an API key: set NHIP_COLLECTOR_API_KEY (clients send it as X-API-Key)")
    expected = key.encode("utf-8")
    store_path = config.store_path
    lock = threading.Lock()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        con = connect(store_path, create=True)
        app.state.con = con
        try:
            yield
        finally:
            with lock:
                con.close()

    app = FastAPI(title="Nhịp collector", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)

    def store(rows: RawRows, source: str) -> dict:
        """One batch, one transaction; runs in a worker thread, one batch at a time."""
        with lock:
            report, outcomes = import_rows(app.state.con, rows, source, outcomes=True)
        results = [None] * report.rows_read
        for outcome in outcomes:
            status = _STATUS.get(outcome.status, outcome.status)
            reason = str(outcome.reason) if status == "rejected" else None
            results[int(outcome.line)] = {"index": int(outcome.line), "status": status, "reason": reason}
        return {"accepted": report.accepted, "duplicates": report.duplicates,
                "rejected": report.quarantined, "results": results}

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.post("/events")
    async def events(request: Request) -> Response:
        given = request.headers.get("x-api-key", "").encode("utf-8")
        if not hmac.compare_digest(given, expected):
            return _error(401, "missing or invalid X-API-Key")
        source = request.query_params.get("source")
        if source is not None and not _SOURCE_RE.match(source):
            return _error(400, "source must be 1-64 letters, digits, '_', '.', ':' or '-'")
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_body_bytes:
            return _error(413, f"body larger than {max_body_bytes:,} bytes; send smaller batches")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body_bytes:
                return _error(413, f"body larger than {max_body_bytes:,} bytes; send smaller batches")
        try:
            payload = json.loads(body, parse_constant=_no_constant)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            return _error(400, f"body is not valid JSON: {exc}")
        items = payload.get("events") if isinstance(payload, dict) else payload
        if not isinstance(items, list):
            return _error(400, 'expected a JSON array of events, or {"events": [...]}')
        if len(items) > max_batch:
            return _error(413, f"{len(items):,} events in one batch; send at most {max_batch:,}")
        if not items:
            return JSONResponse({"accepted": 0, "duplicates": 0, "rejected": 0, "results": []})
        answer = await run_in_threadpool(store, _rows(items), f"collector:{source}" if source else "collector")
        return JSONResponse(answer)

    return app
