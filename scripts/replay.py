"""Replays River's Bananas dataset into the job's event topic as a keyed, event-timed stream, then
follows the prediction and snapshot topics until every row has been predicted and learned.

    .venv/bin/python scripts/replay.py --config conf/job.yaml --keys 4 --rows 2000
"""

import argparse
import json
import sys
import time
from collections import Counter

from kafka import KafkaConsumer, KafkaProducer
from river import datasets

from jobs.config import load_config
from udfs.envelope import EnvelopeError, decode


def events(n_rows: int, n_keys: int, window_ms: int):
    """Row i goes to key i % n_keys, one row per key and window, so every row is one feature row."""
    for i, (x, y) in enumerate(datasets.Bananas().take(n_rows)):
        window = i // n_keys
        yield {"entity": f"key-{i % n_keys}", "x1": x["1"], "x2": x["2"], "label": y, "ts": window * window_ms + 1}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="conf/job.yaml")
    parser.add_argument("--keys", type=int, default=4)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--timeout", type=float, default=180, help="seconds to wait for the job's output")
    args = parser.parse_args(argv)

    config = load_config(args.config)
    bootstrap = config["kafka.bootstrap_servers"]
    window_ms = int(float(config["window.size_seconds"]) * 1000)
    consumer = KafkaConsumer(config["topics.predictions.name"], config["topics.snapshots.name"],
                             bootstrap_servers=bootstrap, auto_offset_reset="latest", group_id=None)
    consumer.poll(timeout_ms=1000)  # join at the current end, so only this replay's output counts

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    rows = list(events(args.rows, args.keys, window_ms))
    # One event far ahead in event time closes the last windows of every key.
    closer = {"entity": "watermark", "x1": 0.0, "x2": 0.0, "label": False, "ts": rows[-1]["ts"] + 10 * window_ms + 60_000}
    for event in rows + [closer]:
        producer.send(config["topics.events.name"], key=event["entity"].encode(), value=json.dumps(event).encode())
    producer.flush()
    print(f"replay: produced {len(rows)} events for {args.keys} keys to {config['topics.events.name']}")

    predictions, latest = Counter(), {}
    rows_per_key = Counter(event["entity"] for event in rows)

    def caught_up():
        return sum(predictions.values()) >= len(rows) and all(
            key in latest and rows_per_key[key] - latest[key].n_learned < config.get("snapshots.every_n_updates", 1)
            for key in rows_per_key)

    deadline = time.monotonic() + args.timeout
    while not caught_up() and time.monotonic() < deadline:
        for tp, records in consumer.poll(timeout_ms=1000).items():
            for record in records:
                if tp.topic == config["topics.predictions.name"]:
                    predictions[json.loads(record.value)["model_key"]] += 1
                else:
                    try:
                        snapshot = decode(record.value)
                    except EnvelopeError as e:
                        print(f"replay: skipping a snapshot at offset {record.offset}: {e}", file=sys.stderr)
                        continue
                    latest[snapshot.key] = snapshot
        print(f"replay: {sum(predictions.values())}/{len(rows)} predictions, "
              f"{len(latest)} keys with a published model", flush=True)
    consumer.close()

    for key in sorted(latest):
        s = latest[key]
        print(f"  {key}: model v{s.model_version}, n_learned={s.n_learned}, {s.metric_name}={s.metric_value:.4f}")
    return 0 if caught_up() else 1


if __name__ == "__main__":
    sys.exit(main())
