"""The BentoML service the automation layer calls before every message.

BentoML runs the server (its workers, /healthz and /livez, /metrics, tracing); the routes are the FastAPI
app of `serving.api`, mounted with `bentoml.asgi_app`, behind `serving.api.Gate` (request ids, API keys,
limits, the access log). It answers from a `serving.state.ServingState` (a feature build and the
champions over it) and follows new champions and builds without a restart (`serving.state.Follower`).
Each model stands on its own: an endpoint whose model is missing answers 503 with the reason, and
`/readyz` and `/model_versions` report per model. It never imports training code.
"""

from __future__ import annotations

import logging
import os

import bentoml

from nhip.settings import get_settings
from serving import api
from serving.auth import parse_keys, require_keys_off_loopback
from serving.metrics import Metrics
from serving.state import Follower

# BentoML's own access log is off: the gate writes one with the request id and the key's name instead.
# The per-message routes are not traced: OpenTelemetry's middleware costs a sixth of a one-customer
# answer, and no exporter is configured unless you configure one (then drop them from this list).
SERVICE_CONFIG = {"traffic": {"timeout": 30}, "logging": {"access": {"enabled": False}},
                  "tracing": {"excluded_urls": ["/propensity", "/clv", "/send_time"]}}


@bentoml.service(name="nhip", workers=1, **SERVICE_CONFIG)
@bentoml.asgi_app(api.app, path="/")
class Nhip:
    def __init__(self) -> None:
        # The service's start is an entry point: the one place it reads the settings.
        settings = get_settings()
        keys = parse_keys(settings.api_keys)
        require_keys_off_loopback(os.environ.get("NHIP_SERVE_HOST", "127.0.0.1"), keys)
        _access_log()
        self.follower = Follower(settings.serving)
        self.follower.start()
        api.configure(api.Context(self.follower, keys, Metrics(), activation=settings.activation))


def _access_log() -> None:
    """One line per request on stderr, as BentoML's own log lines go."""
    log = logging.getLogger("nhip.access")
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s access %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


Nhip.add_asgi_middleware(api.Gate)
