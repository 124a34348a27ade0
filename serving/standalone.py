"""A replica with no Kafka, for load tests of its HTTP server: the config's model, trained on random
rows, serves `keys` keys named k0, k1, ...; the follower is never started.

Run: python -m serving.standalone --config conf/job.yaml --port 8101 --server asgi --keys 100

>>> replica = standalone_replica(Config({"features": {"columns": ["a", "b"]}, "model": {"steps": [
...     {"class": "linear_model.LinearRegression"}]}}, "test.yaml"), keys=2)
>>> replica.registry.keys(), replica.serving.feature_names
(['k0', 'k1'], ('a', 'b'))
"""

from __future__ import annotations

import argparse
import logging
import random

from jobs.config import Config, load_config
from serving.replica import SERVERS, Replica, make_server
from udfs.envelope import Snapshot, dump_model, feature_schema_hash
from udfs.model_spec import build_model, is_classifier
from udfs.signing import Keyring

log = logging.getLogger("serving")


def standalone_replica(config: Config, keys: int, rows: int = 50) -> Replica:
    """A Replica of `config` serving a model per key, trained on `rows` random rows; nothing followed."""
    names = list(config["features.columns"])
    # The follower is built but not started: it dials no broker.
    replica = Replica(
        Config(
            {
                **config.data,
                "kafka": {"bootstrap_servers": "127.0.0.1:1"},
                "topics": {"snapshots": {"name": "-"}, "features": {"name": "-"}},
            },
            config.source,
        ),
        Keyring.ephemeral(),
    )
    model = build_model(config["model"])
    rng = random.Random(0)
    for _ in range(rows):
        x = {name: rng.gauss(0, 1) for name in names}
        model.learn_one(x, x[names[0]] > 0 if is_classifier(model) else x[names[0]])
    payload = dump_model(model)
    for i in range(keys):
        replica.registry.offer(
            Snapshot(
                key=f"k{i}",
                model_version=1,
                n_learned=rows,
                metric_name="-",
                metric_value=None,
                window_end_ms=0,
                watermark_ms=0,
                emitted_at_ms=0,
                feature_schema_hash=feature_schema_hash(names),
                payload=payload,
            ),
            applied_at=0.0,
        )
    replica.follower.ready.set()
    return replica


def main(argv=None):
    parser = argparse.ArgumentParser(description="Serve random-trained models of the config's spec, with no Kafka")
    parser.add_argument("--config", default="conf/job.yaml")
    parser.add_argument("--port", type=int, default=8101)
    parser.add_argument("--server", choices=SERVERS, default="asgi")
    parser.add_argument("--keys", type=int, default=100)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = make_server(standalone_replica(load_config(args.config), args.keys), "127.0.0.1", args.port, args.server)
    log.info("standalone replica (%s server) on http://127.0.0.1:%d", args.server, server.server_address[1])
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
