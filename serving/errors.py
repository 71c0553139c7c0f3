"""One error shape for every endpoint of the service, and the OpenAPI declaration of it.

Every error the service answers, whatever raised it (a bad field, a missing key, a model that is not
loaded, a request too big, a bug), is a JSON body of `ErrorBody`, so a client needs one error handler:

    {"error": "bad_request", "message": "channel: 'pigeon' is not allowed; use one of zalo_oa, …",
     "field": "channel", "allowed": ["zalo_oa", …], "request_id": "5f0c…"}
"""

from __future__ import annotations

import orjson
from pydantic import BaseModel, Field

CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
         409: "conflict", 413: "too_large", 500: "internal", 503: "unavailable"}


class ErrorBody(BaseModel):
    error: str = Field(description="a stable code: " + ", ".join(f"{c} ({s})" for s, c in CODES.items()))
    message: str = Field(description="what went wrong and what to do, for a person")
    field: str | None = Field(default=None, description="the request field at fault, as a dotted path")
    allowed: list[str] | None = Field(default=None, description="the values that field accepts, when a list")
    request_id: str | None = Field(default=None, description="as in the X-Request-ID header and the access log")


class ApiError(Exception):
    """An answer other than 200, raised anywhere under a route and turned into an `ErrorBody`."""

    def __init__(self, status: int, message: str, field: str | None = None, allowed=None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.field = status, message, field
        self.allowed = [str(a) for a in allowed] if allowed is not None else None
        self.code = code or CODES.get(status, "error")


def error_bytes(error: ApiError, request_id: str | None) -> bytes:
    return orjson.dumps({"error": error.code, "message": error.message, "field": error.field,
                         "allowed": error.allowed, "request_id": request_id})


def declared(*statuses: int) -> dict[int, dict]:
    """FastAPI `responses=` for these error statuses, each with the one error body."""
    what = {400: "a field is invalid (`field` names it, `allowed` lists its values)",
            401: "no valid X-API-Key (only when the service has keys)",
            403: "the key's scope does not allow this endpoint",
            404: "the customer is not in the feature build", 409: "the cursor belongs to another feature build",
            413: "the request is over the limits (`message` gives them)",
            500: "a fault of the service; the request id finds it in the log",
            503: "the model this endpoint needs is not loaded; `message` says why"}
    return {s: {"model": ErrorBody, "description": what[s]} for s in statuses}
