"""Serving replicas behind the real learner job: freshness end to end, and key-only predictions from
the latest window features (test_serving_kafka.py covers replicas against published snapshots)."""

import random
import time

import pytest
from kafka import KafkaProducer

from scripts import stack

KEYS = ["book-1", "book-2", "book-3"]


def served_versions(replica):
    return {key: replica.http("GET", f"/models/{key}")[1].get("model_version") for key in KEYS}


@pytest.mark.timeout(300)
def test_freshness_from_window_close_to_every_replica_with_the_real_job(services, flink_job, replicas, tmp_path):
    config = stack.isolated_config(
        tmp_path,
        "conf/job.yaml",
        {
            "source": {"watermark_delay_seconds": 0, "idle_timeout": "1 s"},
            "window": {"size_seconds": 1},
            "snapshots": {"policy": "every_window"},
            "flink": {"execution.checkpointing.interval": "1 s"},
        },
    )
    flink_job("jobs/learner_job.py", "--config", config.source)
    fleet = [replicas(config, 18106), replicas(config, 18107)]
    for replica in fleet:
        replica.wait_ready()

    # Live events, one per key every 200 ms, with their own wall-clock event time.
    producer = KafkaProducer(bootstrap_servers=stack.BOOTSTRAP)
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline:
        for i, key in enumerate(KEYS):
            event = {
                "entity": key,
                "x1": random.random(),
                "x2": float(i),
                "label": random.random() < 0.5,
                "ts": int(time.time() * 1000),
            }
            producer.send(config["topics.events.name"], key=key.encode(), value=stack.json.dumps(event).encode())
        producer.flush()
        time.sleep(0.2)
    producer.close()

    stack.wait_until(
        lambda: all(r.metric("serving_freshness_seconds_count") >= 3 * len(KEYS) for r in fleet),
        60,
        "live snapshots in every replica",
    )
    for replica in fleet:
        for key in KEYS:
            status, model = replica.http("GET", f"/models/{key}")
            assert status == 200 and model["n_learned"] >= 3
            assert 0 < model["freshness_s"] < 60  # window close -> servable here, for this version
        assert replica.metric("serving_freshness_seconds_sum") > 0
    stack.wait_until(
        lambda: served_versions(fleet[0]) == served_versions(fleet[1]), 30, "both replicas on the same versions"
    )


@pytest.mark.timeout(300)
def test_key_only_predictions_use_the_latest_window_features(services, flink_job, replicas, tmp_path):
    config = stack.isolated_config(
        tmp_path,
        "conf/job.yaml",
        {
            "source": {"watermark_delay_seconds": 0, "idle_timeout": "10 min"},
            "window": {"size_seconds": 1},
            "snapshots": {"policy": "every_window"},
            "flink": {"execution.checkpointing.interval": "1 s"},
        },
    )
    flink_job("jobs/learner_job.py", "--config", config.source)
    events = [
        {"entity": key, "x1": (w * 3 + i) % 7 / 2, "x2": float(w % 4), "label": (w + i) % 2 == 0, "ts": w * 1000 + 1}
        for w in range(30)
        for i, key in enumerate(KEYS)
    ]
    stack.produce_json(config["topics.events.name"], events, key_field="entity")
    stack.produce_to_every_partition(
        config["topics.events.name"], {"entity": "closer", "x1": 0.0, "x2": 0.0, "label": False, "ts": 100_000}
    )
    last = {key: [e for e in events if e["entity"] == key][-1] for key in KEYS}

    fleet = [replicas(config, 18108), replicas(config, 18109)]
    for replica in fleet:
        replica.wait_ready()

    def has_last_window(replica):
        return all(replica.http("GET", f"/features/{key}")[1].get("window_end_ms") == 30_000 for key in KEYS)

    for replica in fleet:
        stack.wait_until(lambda: has_last_window(replica), 60, "the last window's features in every replica")
        stack.wait_until(
            lambda: all(replica.http("GET", f"/models/{k}")[1].get("n_learned") == 30 for k in KEYS),
            60,
            "the last models",
        )
        for key in KEYS:
            features = replica.http("GET", f"/features/{key}")[1]["features"]
            assert features == {"x1_avg": last[key]["x1"], "x2_avg": last[key]["x2"]}
            by_key = replica.http("POST", "/predict", {"key": key})[1]
            explicit = replica.http("POST", "/predict", {"key": key, "features": features})[1]
            assert by_key["prediction"] == explicit["prediction"]
            assert by_key["model_version"] == explicit["model_version"] == 30

    # A restarted replica rebuilds the same rows from the compacted topic.
    before = {key: fleet[0].http("GET", f"/features/{key}")[1]["features"] for key in KEYS}
    fleet[0].stop()
    restarted = replicas(config, 18108)
    restarted.wait_ready()
    assert {key: restarted.http("GET", f"/features/{key}")[1]["features"] for key in KEYS} == before
