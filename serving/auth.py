"""API keys for the service: who may call which endpoint.

`NHIP_API_KEYS` is a comma-separated list of `name:scope:secret`, for example

    NHIP_API_KEYS="automation:read:9f2c…,ops:admin:41d7…"

- `read` may score: /propensity, /clv, /send_time, /next_products, /model_versions, /metrics and the
  API document.
- `admin` may also call what returns customer lists or changes state: /lookalike and the paged
  /scores/… exports.
- The health checks (/healthz, /livez, /readyz) need no key, so an orchestrator can probe the service.

The name is what the access log shows; the secret is never logged. Secrets are compared in constant
time (`hmac.compare_digest`) against every key, so the time taken says nothing about which key or
how much of it matched. Rotation is two keys valid at once (see the README).

Without keys the service answers anyone, and so starts only on a loopback address (`require_keys_off_loopback`).
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass, field

READ, ADMIN = "read", "admin"
SCOPES = (READ, ADMIN)
PUBLIC_PATHS = frozenset({"/healthz", "/livez", "/readyz"})
ADMIN_PATHS = ("/lookalike", "/scores/", "/audience")  # a path equal to one, or under one ending in "/"


@dataclass(frozen=True)
class ApiKey:
    name: str
    scope: str
    secret: bytes = field(repr=False)


def parse_keys(text: str | None) -> tuple[ApiKey, ...]:
    """The keys of NHIP_API_KEYS; a malformed entry is a ValueError naming its position and name, never
    its secret."""
    keys = []
    for position, entry in enumerate((text or "").split(","), start=1):
        entry = entry.strip()
        if not entry:
            continue
        parts = entry.split(":", 2)
        if len(parts) != 3 or not parts[0] or not parts[2]:
            raise ValueError(f"NHIP_API_KEYS entry {position} is not name:scope:secret")
        name, scope, secret = parts
        if scope not in SCOPES:
            raise ValueError(f"NHIP_API_KEYS entry {position} ({name}): scope {scope!r} is not one of "
                             f"{', '.join(SCOPES)}")
        keys.append(ApiKey(name, scope, secret.encode("utf-8")))
    names = [k.name for k in keys]
    if len(set(names)) != len(names):
        raise ValueError("NHIP_API_KEYS: each key needs its own name (the access log tells them apart by it)")
    return tuple(keys)


def identify(keys: tuple[ApiKey, ...], given: bytes | None) -> ApiKey | None:
    """The key whose secret is `given`, or None. Every key is compared, in constant time each."""
    if not given:
        return None
    found = None
    for key in keys:
        if hmac.compare_digest(key.secret, given):
            found = key
    return found


def scope_needed(path: str) -> str | None:
    """The scope a path needs: None for the health checks, `admin` for customer lists, else `read`."""
    if path in PUBLIC_PATHS:
        return None
    if any(path == p or (p.endswith("/") and path.startswith(p)) for p in ADMIN_PATHS):
        return ADMIN
    return READ


def allows(key: ApiKey, scope: str) -> bool:
    return scope == READ or key.scope == ADMIN


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_keys_off_loopback(host: str, keys: tuple[ApiKey, ...]) -> None:
    """Refuse to serve beyond this machine without keys: anyone reaching the port could list customers."""
    if not keys and not is_loopback(host):
        raise ValueError(f"the service would answer anyone on {host} without a key: set NHIP_API_KEYS "
                         "(name:scope:secret, comma-separated), or bind 127.0.0.1")
