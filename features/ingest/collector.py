"""The HTTP collector: webhooks and SDKs `POST /events` batches of canonical events into the event store.

    POST /events          X-API-Key: <NHIP_COLLECTOR_API_KEY>
    [{"event_id": "z-1", "ts": "2026-03-02T20:00:00+07:00", "channel": "zalo_oa", "type": "follow",
      "zalo_user_id": "z-lan"}, ...]                      (or {"events": [...]})
    200 {"accepted": 1, "duplicates": 0, "rejected": 0, "stored": true,
         "results": [{"index": 0, "status": "accepted", "reason": null}]}
    GET /healthz          200 {"status": "ok"} (no key needed)

Durable first. A batch is written to the spool (`features.ingest.spool`, fsynced) before anything is
answered, so an event the collector acknowledged survives a `kill -9` of the collector right after its
answer. The drain thread then stores spooled batches in the event store, many per commit, holding the
store's writer lock only for that commit; the collector never holds the store open, so imports, feature
builds, training, scoring and the service run beside it.

Every item gets one answer, in the order sent: `accepted` (stored), `duplicate` (its key — `channel` and
`event_id`, or the content when there is no id — is already stored or came earlier in the batch; a retried
webhook is therefore harmless) or `rejected` with the reason, the item's raw JSON going to quarantine like
a bad row of a file. accepted + duplicates + rejected = items sent, always. Items are normalised exactly
as file imports are (`features.ingest.importer.prepare_rows`); each batch gets a row in `imports` (source
`collector` or `collector:<source>` from the `?source=` query parameter).

The answer waits up to `ack_wait` (1 s) for the batch's commit and is then exact (`"stored": true`).
When another writer holds the store longer (a large `nhip ingest`, an erasure), it says `"stored": false`:
the batch is durably queued and will be stored; `accepted` then counts the items that passed
normalisation and were not repeated within the batch, and an item that repeats an already stored event
is counted as a duplicate when the batch is stored.

Errors for the whole request: 401 without a valid `X-API-Key`; 400 when the body is not JSON or not a list
of events (or `{"events": [...]}`); 413 above `max_batch` items (default 5,000) or `max_body_bytes`. A 5xx
means nothing was spooled: send the batch again.

The API key comes from `NHIP_COLLECTOR_API_KEY`; `create_app` refuses to build the app without one.
Run it with `nhip collect [--host 127.0.0.1] [--port 8100]`.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from features.ingest.importer import Prepared, prepare_rows
from features.ingest.spool import Drainer, LocalSpool, batch_rows
from features.store import quiet, store_writer

__all__ = ["CollectorConfig", "CollectorConfigError", "create_app", "MAX_BATCH", "MAX_BODY_BYTES"]

MAX_BATCH = 5_000
MAX_BODY_BYTES = 32 * 1024 * 1024
ACK_WAIT_SECONDS = 1.0
_SOURCE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_STATUS = {"accepted": "accepted", "duplicate": "duplicate", "quarantined": "rejected"}  # RowOutcome.status
_log = logging.getLogger("nhip.collector")


class CollectorConfigError(RuntimeError):
    """The collector cannot start as configured (no API key)."""


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status)


@dataclass(frozen=True)
class CollectorConfig:
    """What the collector needs: the store it writes, its spool, and the key clients must send
    (NHIP_COLLECTOR_API_KEY)."""

    store_path: Path
    spool_path: Path
    api_key: str | None


def check_store(config: CollectorConfig) -> None:
    """Take the store's writer lock once (creating the store if need be), so that an unwritable workspace
    stops `nhip collect` with one line before the server starts."""
    with store_writer(config.store_path, doing="starting the collector", wait=60):
        pass


def _queued_answer(prepared: Prepared) -> dict:
    """The answer for a batch spooled but not yet stored: normalisation's verdict, and repeats within
    the batch as duplicates (see the module docstring)."""
    keys = pd.Series(prepared.events["event_key"].to_pylist())
    repeated = keys.groupby(keys).cumcount().to_numpy() > 0
    status = {}
    for line, reason in zip(prepared.lines_all, prepared.reasons_all):
        status[int(line)] = ("rejected", str(reason)) if pd.notna(reason) else ("accepted", None)
    for line, again in zip(prepared.lines, repeated):
        if again:
            status[int(line)] = ("duplicate", None)
    for line, _, reason in prepared.unreadable:
        status[int(line)] = ("rejected", str(reason))
    results = [{"index": i, "status": status[i][0], "reason": status[i][1]} for i in range(prepared.rows_read)]
    counts = {s: sum(r["status"] == s for r in results) for s in ("accepted", "duplicate", "rejected")}
    return {"accepted": counts["accepted"], "duplicates": counts["duplicate"], "rejected": counts["rejected"],
            "stored": False, "results": results}


def create_app(config: CollectorConfig, *, max_batch: int = MAX_BATCH, max_body_bytes: int = MAX_BODY_BYTES,
               ack_wait: float = ACK_WAIT_SECONDS) -> FastAPI:
    """The collector app for `config`; see the module docstring.

    Raises `CollectorConfigError` when no API key is configured. The drain thread starts with the app
    (lifespan) and, on shutdown, stores what is still spooled before it stops.
    """
    key = (config.api_key or "").strip()
    if not key:
        raise CollectorConfigError(
            "the collector needs an API key: set NHIP_COLLECTOR_API_KEY (clients send it as X-API-Key)")
    expected = key.encode("utf-8")
    spool = LocalSpool(config.spool_path)
    drainer = Drainer(spool, config.store_path, on_error=lambda exc: _log.warning("drain failed: %s", exc))
    scratch = threading.local()  # a DuckDB connection per worker thread, for hashing event keys

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        drainer.start()
        try:
            yield
        finally:
            await run_in_threadpool(drainer.stop)

    app = FastAPI(title="Nhịp collector", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)

    def receive(items: list, source: str) -> dict:
        """Normalise, spool durably, hand to the drain, wait a moment for the commit; in a worker thread."""
        if not hasattr(scratch, "con"):
            scratch.con = quiet(duckdb.connect())
        prepared = prepare_rows(batch_rows(items), source, con=scratch.con)
        batch = spool.put(items, source)
        ticket = drainer.submit(batch, prepared)
        if not ticket.ready.wait(ack_wait):
            return _queued_answer(prepared)
        report, outcomes = ticket.result
        results = [None] * report.rows_read
        for outcome in outcomes:
            status = _STATUS.get(outcome.status, outcome.status)
            reason = str(outcome.reason) if status == "rejected" else None
            results[int(outcome.line)] = {"index": int(outcome.line), "status": status, "reason": reason}
        return {"accepted": report.accepted, "duplicates": report.duplicates,
                "rejected": report.quarantined, "stored": True, "results": results}

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
            return JSONResponse({"accepted": 0, "duplicates": 0, "rejected": 0, "stored": True, "results": []})
        answer = await run_in_threadpool(receive, items, f"collector:{source}" if source else "collector")
        return JSONResponse(answer)

    return app
