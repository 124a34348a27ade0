"""The replica's endpoints, answered alike by either HTTP server (serving.asgi_server, serving.stdlib_server):
a request's method, target and body in, a `Reply` out. Request metrics are counted here, so that both
servers count alike and a benchmark of one against the other compares the same work.

>>> find("GET", "/v2/models/book%2F1/ready")[0].path, find("GET", "/v2/models/book%2F1/ready")[1]
('/v2/models/{key}/ready', 'book/1')
>>> find("GET", "/predict"), route("/predict"), route("/models/k/x"), route("/predict?debug=1")
((None, None), '/predict', '/models', 'other')
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
from typing import Callable
from urllib.parse import unquote

from serving import v2
from serving.json_body import parse_json
from serving.openapi import DOCUMENT
from serving.requests import REQUEST_ERRORS, NotFound, error_body, predict, predict_batch, recommend

log = logging.getLogger("serving")


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json"
    # Closed after this reply: what is left of the request's body would be read as the next request.
    close: bool = False

    @classmethod
    def of(cls, status: int, payload, close: bool = False) -> Reply:
        if isinstance(payload, str):
            return cls(status, payload.encode(), "text/plain; version=0.0.4", close)
        return cls(status, json.dumps(payload).encode(), close=close)


class BodyError(ValueError):
    """A request body left unread: too large or of no known length. Carries the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def body_length(transfer_encoding, content_length, max_bytes: int) -> int:
    """The length of a request's body, from its headers, when it is one to read: within `max_bytes`."""
    if transfer_encoding:
        raise BodyError(411, "send the body with a Content-Length header, not chunked")
    try:
        length = int(content_length or 0)
    except ValueError:
        length = -1
    if length < 0:  # reading a length of -1 would wait for the client to hang up
        raise BodyError(400, f"Content-Length must be a whole number of bytes, got {content_length!r}")
    if length > max_bytes:
        raise BodyError(413, f"body of {length} bytes is over the limit of {max_bytes} (serving.max_body_bytes)")
    return length


def _healthz(replica, key, body):
    if replica.follower.error:
        return 503, {"status": "not following the topics", "error": replica.follower.error}
    return 200, {"status": "ok"}


def _readyz(replica, key, body):
    ready = replica.follower.ready.is_set()
    partitions = replica.serving.partitions
    return (200 if ready else 503), {
        "ready": ready,
        "models": len(replica.registry),
        **(partitions.describe() if partitions else {}),
    }


def _model(replica, key, body):
    described = replica.registry.describe(key, time.time())
    if described is None:
        replica.serving.check_held(key)
        raise NotFound(f"no model for key '{key}'")
    return 200, described


def _features(replica, key, body):
    stored = replica.features.get(key)
    if stored is None:
        replica.serving.check_held(key)
        raise NotFound(f"no features stored for key '{key}'")
    return 200, {
        "key": key,
        "features": stored.row.features,
        "window_end_ms": stored.row.window_end_ms,
        "age_s": stored.age_s(time.time()),
    }


def _v2_live(replica, key, body):
    live = not replica.follower.error  # as /healthz: a replica that stopped following wants a restart
    return (200 if live else 503), {"live": live}


def _v2_ready(replica, key, body):
    ready = replica.follower.ready.is_set()
    return (200 if ready else 503), {"ready": ready}


def _on_serving(answer: Callable) -> Callable:
    """An endpoint answered by a pure request function of serving.requests, from the request's body."""
    return lambda replica, key, body: (200, answer(replica.serving, body))


def _on_model(answer: Callable) -> Callable:
    """An endpoint answered by a function of serving.v2 from the key in the path."""
    return lambda replica, key, body: (200, answer(replica.serving, key))


@dataclasses.dataclass(frozen=True)
class Endpoint:
    method: str
    # As in the OpenAPI document; {key} stands for the rest of the path, percent-decoded.
    path: str
    answer: Callable  # (replica, key, parsed body or None) -> (status, payload)
    # The endpoint's label in serving_requests_total; keys never become labels.
    label: str = ""
    # Predictions: counted as stale or shadowed, and timed in serving_request_seconds.
    predicts: bool = False

    def __post_init__(self):
        object.__setattr__(self, "label", self.label or self.path)
        pattern = re.escape(self.path).replace(re.escape("{key}"), "(?P<key>.+)")
        object.__setattr__(self, "_regex", re.compile(pattern) if "{key}" in self.path else None)

    def match(self, target: str) -> str | None:
        """The endpoint's key in `target` ("" for one without), or None when it is another endpoint's."""
        if self._regex is None:
            return "" if target == self.path else None
        found = self._regex.fullmatch(target)
        return unquote(found["key"]) if found else None


# The more specific of two paths that could both match comes first.
ENDPOINTS = (
    Endpoint("POST", "/predict", _on_serving(predict), predicts=True),
    Endpoint("POST", "/predict/batch", _on_serving(predict_batch), predicts=True),
    Endpoint("POST", "/recommend", _on_serving(recommend), predicts=True),
    Endpoint("GET", "/healthz", _healthz),
    Endpoint("GET", "/readyz", _readyz),
    Endpoint("GET", "/metrics", lambda replica, key, body: (200, replica.metrics_text())),
    Endpoint("GET", "/openapi.json", lambda replica, key, body: (200, DOCUMENT)),
    Endpoint("GET", "/models/{key}", _model, label="/models"),
    Endpoint("GET", "/features/{key}", _features, label="/features"),
    Endpoint("GET", "/v2/health/live", _v2_live),
    Endpoint("GET", "/v2/health/ready", _v2_ready),
    Endpoint("GET", "/v2/models/{key}/ready", _on_model(v2.ready)),
    Endpoint(
        "POST",
        "/v2/models/{key}/infer",
        lambda replica, key, body: (200, v2.infer(replica.serving, key, body)),
        predicts=True,
    ),
    Endpoint("GET", "/v2/models/{key}", _on_model(v2.metadata)),
)
_FIXED = {(e.method, e.path): e for e in ENDPOINTS if "{key}" not in e.path}


def find(method: str, target: str) -> tuple[Endpoint | None, str | None]:
    """The endpoint for a request line's method and target, and the key in it."""
    fixed = _FIXED.get((method, target))
    if fixed is not None:
        return fixed, ""
    for endpoint in ENDPOINTS:
        key = endpoint.match(target) if endpoint.method == method else None
        if key is not None:
            return endpoint, key
    return None, None


def route(target: str) -> str:
    """A request's label in the metrics: its endpoint, so that neither keys nor probes of random paths add series."""
    return next((e.label for e in ENDPOINTS if e.match(target) is not None), "other")


def refuse(replica, target: str, status: int, message: str, close: bool = True) -> Reply:
    """A request answered before it reached an endpoint (a server's limit), counted like the others."""
    replica.requests.inc(path=route(target), status=str(status))
    return Reply.of(status, {"error": message}, close=close)


def answer(replica, method: str, target: str, body: bytes) -> Reply:
    """The reply to a request whose body was read whole."""
    started = time.perf_counter()
    endpoint, key = find(method, target)
    if endpoint is None:
        return refuse(replica, target, 404, f"no such path: {target}", close=False)
    limits = replica.limits
    try:
        parsed = parse_json(body, limits.max_json_depth, limits.max_json_digits) if method == "POST" else None
        status, payload = endpoint.answer(replica, key, parsed)
    except REQUEST_ERRORS as e:
        status, payload = e.status, error_body(e)
    except Exception as e:
        # An answer, not a dropped connection: the client can tell a bad model from a network fault.
        log.exception("%s failed", target)
        status, payload = 500, {"error": f"internal error: {type(e).__name__}: {e}"}
    reply = Reply.of(status, payload)
    replica.requests.inc(path=endpoint.label, status=str(status))
    if endpoint.predicts and status == 200:
        predictions = [payload] if "prediction" in payload else payload.get("results", [])
        replica.stale_features.inc(sum(1 for a in predictions if a.get("features_stale")))
        for shadow in (a["shadow"] for a in predictions if "shadow" in a):
            replica.shadow_predictions.inc(outcome="error" if "error" in shadow else "ok")
        replica.latency.observe(time.perf_counter() - started)
    return reply
