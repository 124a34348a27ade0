"""A serving replica: follows the snapshot topic and answers HTTP on 127.0.0.1.

    POST /predict         {"key": "k", "features": {...}}  -> prediction, model_version, model age
                          (features optional: the key's latest window features fill what is not sent;
                          with serving.shadow_challenger, the challenger's prediction under "shadow")
    POST /predict/batch   {"requests": [...]}               -> {"results": [...]}
    POST /recommend       {"user": "u", "n": 5, "candidates": [...]} -> keys ranked by prediction
    GET  /models/{key}    version, metric, n_learned, window end, age, last rollback, versions held,
                          drift, held_back and challenger facts
    GET  /features/{key}  the key's latest window features and their age
    GET  /healthz         200 while following the topics (or retrying), 503 once following failed for good
    GET  /readyz          200 once caught up with the snapshot topic, 503 before
    GET  /metrics         Prometheus text

Run: python -m serving.replica --config conf/job.yaml --port 8000

The HTTP server is the standard library's ThreadingHTTPServer: one thread per connection is plenty
for a replica whose work per request is one River prediction, and it adds no dependency.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

from jobs.config import load_config
from serving.feature_store import FeatureStore
from serving.follower import Follower
from serving.metrics import Counter, Histogram, render
from serving.registry import ModelRegistry
from serving.requests import BadRequest, NotFound, Serving, predict, predict_batch, recommend
from udfs.envelope import feature_schema_hash

log = logging.getLogger("serving")

ROUTES = ("/predict", "/predict/batch", "/recommend", "/healthz", "/readyz", "/metrics")


class BodyError(ValueError):
    """A request body left unread: too large or of no known length. Carries the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def read_body(headers, rfile, max_bytes: int) -> bytes:
    """A request's body, read only when it declares a length within `max_bytes`."""
    if headers.get("Transfer-Encoding"):
        raise BodyError(411, "send the body with a Content-Length header, not chunked")
    try:
        length = int(headers.get("Content-Length") or 0)
    except ValueError:
        length = -1
    if length < 0:  # reading a length of -1 would wait for the client to hang up
        raise BodyError(400, f"Content-Length must be a whole number of bytes, got {headers.get('Content-Length')!r}")
    if length > max_bytes:
        raise BodyError(413, f"body of {length} bytes is over the limit of {max_bytes}")
    return rfile.read(length)


def route(path: str) -> str:
    """A request's label in the metrics: its endpoint, so that neither keys nor probes of random paths
    add series."""
    if path in ROUTES:
        return path
    for prefix in ("/models", "/features"):
        if path.startswith(prefix + "/"):
            return prefix
    return "other"


def model_registry(config) -> ModelRegistry:
    """The registry `serving.history_per_key` and `serving.shadow_challenger` ask for; a wrong value names its setting."""
    shadow = config.get("serving.shadow_challenger", False)
    if not isinstance(shadow, bool):
        raise config.error("serving.shadow_challenger", f"must be true or false, got {shadow!r}")
    try:
        return ModelRegistry(history_per_key=config.get("serving.history_per_key", 3), shadow_challenger=shadow)
    except ValueError as e:
        raise config.error("serving.history_per_key", str(e).removeprefix("history_per_key ")) from None


class Replica:
    """What the HTTP handlers need: the registry, its follower, settings and request metrics."""

    def __init__(self, config):
        self.serving = Serving(
            registry=model_registry(config),
            features=FeatureStore(),
            feature_names=tuple(config["features.columns"]),
            fallback_key=config.get("serving.fallback_key", None),
            max_feature_age_s=float(config.get("serving.max_feature_age_s", float("inf"))),
        )
        self.registry, self.features = self.serving.registry, self.serving.features
        self.max_body_bytes = int(config.get("serving.max_body_bytes", 1 << 20))
        self.follower = Follower(
            config["kafka.bootstrap_servers"], config["topics.snapshots.name"], config["topics.features.name"],
            self.registry, self.features, feature_schema_hash(self.serving.feature_names),
            config.get("serving.freshness_buckets", [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60]),
        )
        self.requests = Counter("serving_requests_total", "HTTP requests, by path and status.", labels=("path", "status"))
        self.stale_features = Counter("serving_stale_feature_predictions_total",
                                      "Predictions made with stored features older than serving.max_feature_age_s.")
        self.shadow_predictions = Counter("serving_shadow_predictions_total",
                                          "Challenger predictions made next to the served ones, by outcome.",
                                          labels=("outcome",))
        self.latency = Histogram("serving_request_seconds", "Time to answer a predict request.",
                                 [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1])

    def metrics_text(self) -> str:
        return render([*self.follower.metrics(), self.requests, self.stale_features, self.shadow_predictions,
                       self.latency])


class Handler(BaseHTTPRequestHandler):
    replica: Replica
    protocol_version = "HTTP/1.1"
    # A reply goes out as headers, then body: with Nagle on, a kept-alive client's delayed ACK holds the
    # body back about 40 ms.
    disable_nagle_algorithm = True

    def do_GET(self):
        replica = self.replica
        if self.path == "/healthz":
            if replica.follower.error:
                self._reply(503, {"status": "not following the topics", "error": replica.follower.error})
            else:
                self._reply(200, {"status": "ok"})
        elif self.path == "/readyz":
            ready = replica.follower.ready.is_set()
            self._reply(200 if ready else 503, {"ready": ready, "models": len(replica.registry)})
        elif self.path == "/metrics":
            self._reply(200, replica.metrics_text(), content_type="text/plain; version=0.0.4")
        elif self.path.startswith("/models/"):
            key = unquote(self.path[len("/models/"):])
            described = replica.registry.describe(key, time.time())
            if described is None:
                self._reply(404, {"error": f"no model for key '{key}'"})
            else:
                self._reply(200, described)
        elif self.path.startswith("/features/"):
            key = unquote(self.path[len("/features/"):])
            stored = replica.features.get(key)
            if stored is None:
                self._reply(404, {"error": f"no features stored for key '{key}'"})
            else:
                self._reply(200, {"key": key, "features": stored.row.features, "window_end_ms": stored.row.window_end_ms,
                                  "age_s": stored.age_s(time.time())})
        else:
            self._reply(404, {"error": f"no such path: {self.path}"})

    def do_POST(self):
        replica = self.replica
        started = time.perf_counter()
        handlers = {"/predict": predict, "/predict/batch": predict_batch, "/recommend": recommend}
        if self.path not in handlers:
            return self._reply(404, {"error": f"no such path: {self.path}"})
        try:
            raw = read_body(self.headers, self.rfile, replica.max_body_bytes)
        except BodyError as e:
            # Closing, because what is left of the body would be read as the next request.
            return self._reply(e.status, {"error": str(e)}, close=True)
        try:
            body = json.loads(raw or b"null")
        except ValueError as e:
            return self._reply(400, {"error": f"body is not valid JSON: {e}"})
        try:
            answer = handlers[self.path](replica.serving, body)
        except (BadRequest, NotFound) as e:
            return self._reply(e.status, {"error": str(e)})
        except Exception as e:
            # An answer, not a dropped connection: the client can tell a bad model from a network fault.
            log.exception("%s failed", self.path)
            return self._reply(500, {"error": f"internal error: {type(e).__name__}: {e}"})
        self._reply(200, answer)
        predictions = [answer] if "prediction" in answer else answer.get("results", [])
        replica.stale_features.inc(sum(1 for a in predictions if a.get("features_stale")))
        for shadow in (a["shadow"] for a in predictions if "shadow" in a):
            replica.shadow_predictions.inc(outcome="error" if "error" in shadow else "ok")
        replica.latency.observe(time.perf_counter() - started)

    def _reply(self, status: int, payload, content_type: str = "application/json", close: bool = False):
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")  # also makes the handler close after this reply
        self.end_headers()
        self.wfile.write(data)
        self.replica.requests.inc(path=route(self.path), status=str(status))

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        log.debug(format, *args)


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client hanging up (curl -f on a 503 does) is routine; anything else is logged, not printed.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            log.exception("connection from %s:%d failed", *client_address[:2])


def make_server(replica: Replica, host: str, port: int) -> Server:
    """An HTTP server answering from `replica`; port 0 picks a free one."""
    return Server((host, port), type("ReplicaHandler", (Handler,), {"replica": replica}))


def main(argv=None):
    parser = argparse.ArgumentParser(description="Serve per-key River models from the snapshot topic")
    parser.add_argument("--config", default="conf/job.yaml")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    replica = Replica(load_config(args.config))
    replica.follower.start()
    server = make_server(replica, args.host, args.port)
    log.info("serving on http://%s:%d", args.host, args.port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        replica.follower.stopping.set()
        server.server_close()


if __name__ == "__main__":
    main()
