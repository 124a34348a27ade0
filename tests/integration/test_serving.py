"""Serving replicas against the real broker: convergence, restarts, corrupt snapshots, load during swaps."""

import random
import threading
import time

import pytest
from kafka import KafkaProducer
from river import datasets, linear_model, preprocessing

from tests.integration import stack
from udfs.envelope import Snapshot, dump_model, encode, feature_schema_hash

KEYS = ["book-1", "book-2", "book-3"]


def model_after(n):
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    for x, y in datasets.Bananas().take(n):
        model.learn_one({"x1_avg": x["1"], "x2_avg": x["2"]}, y)
    return model


class Publisher:
    """Publishes snapshots as the job would: keyed by model key, envelope bytes as the value."""

    def __init__(self, config):
        self.topic = config["topics.snapshots.name"]
        self.schema_hash = feature_schema_hash(config["features.columns"])
        self.producer = KafkaProducer(bootstrap_servers=stack.BOOTSTRAP)
        self.published = {key: set() for key in KEYS}

    def publish(self, key, version, schema_hash=None):
        envelope = encode(Snapshot(
            key=key, model_version=version, n_learned=version, metric_name="LogLoss", metric_value=0.5,
            window_end_ms=int(time.time() * 1000), watermark_ms=0, emitted_at_ms=int(time.time() * 1000),
            feature_schema_hash=schema_hash or self.schema_hash, payload=dump_model(model_after(version))))
        self.producer.send(self.topic, key=key.encode(), value=envelope)
        self.published[key].add(version)

    def raw(self, key, value):
        self.producer.send(self.topic, key=key.encode(), value=value)

    def flush(self):
        self.producer.flush()


def served_versions(replica):
    return {key: replica.http("GET", f"/models/{key}")[1].get("model_version") for key in KEYS}


@pytest.mark.timeout(180)
def test_replicas_converge_and_a_restarted_one_catches_up(services, replicas, tmp_path):
    config = stack.isolated_config(tmp_path, "conf/job.yaml")
    publisher = Publisher(config)
    for version in range(1, 6):
        for key in KEYS:
            publisher.publish(key, version)
    publisher.flush()
    first = replicas(config, 18101)
    first.wait_ready()
    for key in KEYS:  # duplicates and reordering are harmless
        publisher.publish(key, 3)
        publisher.publish(key, 8)
    publisher.flush()
    second = replicas(config, 18102)  # starts later, reads the topic from the start
    second.wait_ready()
    stack.wait_until(lambda: served_versions(first) == served_versions(second) == {k: 8 for k in KEYS}, 30, "convergence")

    first.stop()
    for key in KEYS:
        publisher.publish(key, 12)
    publisher.flush()
    restarted = replicas(config, 18101)
    restarted.wait_ready()
    assert served_versions(restarted) == {k: 12 for k in KEYS}
    assert restarted.metric("serving_snapshots_rejected_total") == 0


@pytest.mark.timeout(180)
def test_a_corrupt_snapshot_is_rejected_and_the_old_model_keeps_serving(services, replicas, tmp_path):
    config = stack.isolated_config(tmp_path, "conf/job.yaml")
    publisher = Publisher(config)
    publisher.publish("book-1", 4)
    publisher.flush()
    replica = replicas(config, 18103)
    replica.wait_ready()

    publisher.raw("book-1", bytes(random.Random(7).getrandbits(8) for _ in range(300)))
    publisher.publish("book-1", 9, schema_hash="0123456789abcdef")  # trained on other features
    publisher.publish("book-2", 1)  # a good one after the bad ones
    publisher.flush()
    stack.wait_until(lambda: replica.http("GET", "/models/book-2")[0] == 200, 30, "the good snapshot after the bad ones")

    assert replica.metric('serving_snapshots_rejected_total{reason="corrupt"}') == 1
    assert replica.metric('serving_snapshots_rejected_total{reason="schema"}') == 1
    status, answer = replica.http("POST", "/predict", {"key": "book-1", "features": {"x1_avg": 0.2, "x2_avg": -0.3}})
    expected = model_after(4).predict_proba_one({"x1_avg": 0.2, "x2_avg": -0.3})[True]
    assert status == 200 and answer["model_version"] == 4 and answer["prediction"] == expected


@pytest.mark.timeout(180)
def test_no_request_fails_while_models_swap(services, replicas, tmp_path):
    config = stack.isolated_config(tmp_path, "conf/job.yaml")
    publisher = Publisher(config)
    for key in KEYS:
        publisher.publish(key, 1)
    publisher.flush()
    replica = replicas(config, 18104)
    replica.wait_ready()

    def keep_publishing():
        for version in range(2, 40):
            for key in KEYS:
                publisher.publish(key, version)
            publisher.flush()
            time.sleep(0.05)

    swapping = threading.Thread(target=keep_publishing)
    swapping.start()
    answers, failures = [], []
    while swapping.is_alive() and len(answers) < 5000:
        key = random.choice(KEYS)
        status, answer = replica.http("POST", "/predict", {"key": key, "features": {"x1_avg": 0.1, "x2_avg": 0.2}})
        (answers if status == 200 else failures).append((key, answer))
    swapping.join(timeout=60)

    assert failures == []
    assert len(answers) > 100
    assert all(answer["model_version"] in publisher.published[key] for key, answer in answers)
    assert len({answer["model_version"] for _, answer in answers}) > 5, "requests should span many swaps"
    assert replica.metric("serving_snapshots_applied_total") > 3 * 5


@pytest.mark.timeout(60)
def test_bad_requests_get_clear_answers(services, replicas, tmp_path):
    config = stack.isolated_config(tmp_path, "conf/job.yaml", {"serving": {"max_body_bytes": 1000}})
    publisher = Publisher(config)
    publisher.publish("book-1", 1)
    publisher.flush()
    replica = replicas(config, 18105)
    replica.wait_ready()
    assert replica.http("POST", "/predict", {"key": "nope", "features": {"x1_avg": 1, "x2_avg": 1}}) == \
        (404, {"error": "no model for key 'nope'"})
    assert replica.http("POST", "/predict", {"key": "book-1", "features": {"x1_avg": "1"}}) == \
        (400, {"error": "feature 'x1_avg' must be a number, got str"})
    assert replica.http("POST", "/predict", {"key": "book-1", "features": {"pad": "x" * 2000}})[0] == 413
    assert replica.http("GET", "/healthz") == (200, {"status": "ok"})


@pytest.mark.timeout(300)
def test_freshness_from_window_close_to_every_replica_with_the_real_job(services, flink_job, replicas, tmp_path):
    config = stack.isolated_config(tmp_path, "conf/job.yaml", {
        "source": {"watermark_delay_seconds": 0, "idle_timeout": "1 s"},
        "window": {"size_seconds": 1},
        "snapshots": {"policy": "every_window"},
        "flink": {"execution.checkpointing.interval": "1 s"},
    })
    flink_job("jobs/learner_job.py", "--config", config.source)
    fleet = [replicas(config, 18106), replicas(config, 18107)]
    for replica in fleet:
        replica.wait_ready()

    # Live events, one per key every 200 ms, with their own wall-clock event time.
    producer = KafkaProducer(bootstrap_servers=stack.BOOTSTRAP)
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline:
        for i, key in enumerate(KEYS):
            event = {"entity": key, "x1": random.random(), "x2": float(i), "label": random.random() < 0.5,
                     "ts": int(time.time() * 1000)}
            producer.send(config["topics.events.name"], key=key.encode(), value=stack.json.dumps(event).encode())
        producer.flush()
        time.sleep(0.2)
    producer.close()

    stack.wait_until(lambda: all(r.metric("serving_freshness_seconds_count") >= 3 * len(KEYS) for r in fleet), 60,
             "live snapshots in every replica")
    for replica in fleet:
        for key in KEYS:
            status, model = replica.http("GET", f"/models/{key}")
            assert status == 200 and model["n_learned"] >= 3
            assert 0 < model["freshness_s"] < 60  # window close -> servable here, for this version
        assert replica.metric("serving_freshness_seconds_sum") > 0
    stack.wait_until(lambda: served_versions(fleet[0]) == served_versions(fleet[1]), 30, "both replicas on the same versions")


@pytest.mark.timeout(300)
def test_key_only_predictions_use_the_latest_window_features(services, flink_job, replicas, tmp_path):
    config = stack.isolated_config(tmp_path, "conf/job.yaml", {
        "source": {"watermark_delay_seconds": 0, "idle_timeout": "10 min"},
        "window": {"size_seconds": 1},
        "snapshots": {"policy": "every_window"},
        "flink": {"execution.checkpointing.interval": "1 s"},
    })
    flink_job("jobs/learner_job.py", "--config", config.source)
    events = [{"entity": key, "x1": (w * 3 + i) % 7 / 2, "x2": float(w % 4), "label": (w + i) % 2 == 0, "ts": w * 1000 + 1}
              for w in range(30) for i, key in enumerate(KEYS)]
    stack.produce_json(config["topics.events.name"], events, key_field="entity")
    stack.produce_to_every_partition(config["topics.events.name"],
                                     {"entity": "closer", "x1": 0.0, "x2": 0.0, "label": False, "ts": 100_000})
    last = {key: [e for e in events if e["entity"] == key][-1] for key in KEYS}

    fleet = [replicas(config, 18108), replicas(config, 18109)]
    for replica in fleet:
        replica.wait_ready()

    def has_last_window(replica):
        return all(replica.http("GET", f"/features/{key}")[1].get("window_end_ms") == 30_000 for key in KEYS)

    for replica in fleet:
        stack.wait_until(lambda: has_last_window(replica), 60, "the last window's features in every replica")
        stack.wait_until(lambda: all(replica.http("GET", f"/models/{k}")[1].get("n_learned") == 30 for k in KEYS), 60,
                 "the last models")
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
