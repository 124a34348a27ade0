"""A serving replica: follows the snapshot and features topics and answers HTTP on 127.0.0.1.

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
    GET  /openapi.json    the OpenAPI document of every endpoint (serving.openapi)
    GET  /v2/health/live, /v2/health/ready, /v2/models/{key}, /v2/models/{key}/ready,
    POST /v2/models/{key}/infer   the Open Inference Protocol (KServe V2; serving.v2)

Run: python -m serving.replica --config conf/job.yaml --port 8000 [--server asgi|stdlib] [--partitions 0,1]

With `--partitions` (or `serving.partitions`) a replica follows only those partitions of both topics and
so holds only their keys; a request for a key living on another partition is answered 421 with that
partition (serving.partitions), for a router to send it to the replica holding it.

The endpoints (serving.routes) are answered by uvicorn on one event loop (serving.asgi_server), within
the limits under `serving:` in the config (serving.limits); `--server stdlib` answers them with the
standard library's thread-per-connection server instead, for comparison. The topics are read, verified
and checked by a follower thread beside either server, or with `serving.reader_process: true` in a child
process whose results that thread applies (serving.follower).

>>> parse_args(["--port", "0"]).server
'asgi'
"""

from __future__ import annotations

import argparse
import logging
import sys

from jobs.config import ConfigError, column_names, exit_with, load_config, text
from serving.asgi_server import AsgiServer
from serving.feature_store import FeatureStore
from serving.follower import Follower
from serving.metrics import Counter, Histogram, render
from serving.partitions import KeyPartitions, held_partitions
from serving.registry import ModelRegistry
from serving.requests import Serving
from serving.settings import ServingSettings
from serving.stdlib_server import make_stdlib_server
from udfs.empty_windows import EmptyWindows
from udfs.envelope import feature_schema_hash
from udfs.safe_pickle import declared_classes
from udfs.signing import Keyring, SigningSettings

log = logging.getLogger("serving")

SERVERS = ("asgi", "stdlib")


def model_registry(config, settings: ServingSettings) -> ModelRegistry:
    """The registry `serving.history_per_key` and `serving.shadow_challenger` ask for, unpickling through
    the allow-list of the config's declared models; a wrong value names its setting."""
    classes = declared_classes(config)
    try:
        return ModelRegistry(
            history_per_key=settings.history_per_key, shadow_challenger=settings.shadow_challenger, classes=classes
        )
    except ValueError as e:
        raise config.error("serving.history_per_key", str(e).removeprefix("history_per_key ")) from None


class Replica:
    """What the HTTP handlers need: the registry, its follower, settings and request metrics."""

    def __init__(self, config, keyring: Keyring | None = None, partitions: str | None = None):
        """`keyring`: the keys snapshots are verified with; by default those `signing.keys` names.
        `partitions`: the `--partitions` option ("0,1"), which overrides `serving.partitions`."""
        settings = ServingSettings.from_config(config)
        keyring = keyring or SigningSettings.from_config(config).keyring(config.error)
        snapshots_topic = text(config, "topics.snapshots.name")
        held = KeyPartitions(held_partitions(settings.partitions, partitions), snapshots_topic)
        self.serving = Serving(
            registry=model_registry(config, settings),
            features=FeatureStore(),
            feature_names=column_names(config, "features.columns"),
            fallback_key=settings.fallback_key,
            max_feature_age_s=settings.max_feature_age_s,
            empty_window_features=EmptyWindows.from_config(config).features,
            partitions=held if held.held is not None else None,
        )
        self.registry, self.features = self.serving.registry, self.serving.features
        # The server's limits (serving.limits) are among the settings.
        self.limits = settings
        self.follower = Follower(
            text(config, "kafka.bootstrap_servers"),
            snapshots_topic,
            text(config, "topics.features.name"),
            self.registry,
            self.features,
            feature_schema_hash(self.serving.feature_names),
            [float(bucket) for bucket in settings.freshness_buckets],
            keyring,
            held,
            reader_process=settings.reader_process,
        )
        self.requests = Counter(
            "serving_requests_total", "HTTP requests, by path and status.", labels=("path", "status")
        )
        self.stale_features = Counter(
            "serving_stale_feature_predictions_total",
            "Predictions made with stored features older than serving.max_feature_age_s.",
        )
        self.shadow_predictions = Counter(
            "serving_shadow_predictions_total",
            "Challenger predictions made next to the served ones, by outcome.",
            labels=("outcome",),
        )
        self.latency = Histogram(
            "serving_request_seconds",
            "Time to answer a predict request.",
            [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1],
        )

    def metrics_text(self) -> str:
        return render(
            [*self.follower.metrics(), self.requests, self.stale_features, self.shadow_predictions, self.latency]
        )


def make_server(replica: Replica, host: str, port: int, server: str = "asgi"):
    """An HTTP server answering from `replica` (port 0 picks a free one), with `server_address`,
    `serve_forever()`, `shutdown()` from another thread, and `server_close()`."""
    return make_stdlib_server(replica, host, port) if server == "stdlib" else AsgiServer(replica, host, port)


def port_number(value: str) -> int:
    """--port: 0 (any free port) to 65535; argparse names the option in its one-line error."""
    if not value.isdigit() or int(value) > 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number (0 to 65535)")
    return int(value)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Serve per-key River models from the snapshot topic")
    parser.add_argument("--config", default="conf/job.yaml")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=port_number, default=8000)
    parser.add_argument(
        "--server",
        choices=SERVERS,
        default="asgi",
        help="asgi: uvicorn on an event loop; stdlib: a thread per connection, to compare",
    )
    parser.add_argument(
        "--partitions",
        default=None,
        metavar="0,1",
        help="follow only these partitions of the snapshot and features topics, and so hold only "
        "their keys (overrides serving.partitions; default: every partition)",
    )
    return parser.parse_args(argv)


GIL_SWITCH_INTERVAL_S = 0.0005


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    try:
        replica = Replica(load_config(args.config), partitions=args.partitions)
    except ConfigError as e:
        exit_with(e)  # a wrong setting or option, named in one line, rather than a traceback
    # The follower thread unpickles every new model (and reads the topics, unless a reader process does)
    # while requests wait for the GIL: Python hands the GIL over every 5 ms by default, which a request
    # waiting behind a burst of swaps would pay.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    try:
        server = make_server(replica, args.host, args.port, args.server)
    except OSError as e:  # the port is taken, or the host is not this machine's
        exit_with(f"--host {args.host} --port {args.port}: cannot listen there: {e.strerror}")
    replica.follower.start()
    log.info("serving on http://%s:%d (%s server)", args.host, server.server_address[1], args.server)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        replica.follower.stop()  # and with it the reader process
        server.server_close()


if __name__ == "__main__":
    main()
