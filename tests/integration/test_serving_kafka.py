"""Serving replica processes against the real broker, fed by a transactional producer as the job feeds them:
convergence, catching up, refused snapshots, and no failed request while models swap.

These tests need only the broker on 127.0.0.1:9092, not Flink, so they neither start nor stop services.
"""

import collections
import http.client
import json
import os
import random
import signal
import threading
import time
import uuid

import pytest
from kafka import KafkaProducer
from river import datasets, linear_model, preprocessing

from jobs.config import derive_config, load_config
from jobs.topics import declared_topics, ensure_topics
from serving.partitions import partition_of
from scripts import stack
from tests.unit.models import snapshot
from udfs.envelope import FORMAT_VERSION, dump_model, encode, feature_schema_hash

KEYS = ["book-1", "book-2", "book-3"]


@pytest.fixture(autouse=True)
def broker(services):
    """Every test here needs the real broker, started through scripts/kafka.sh when it is not up."""


class Publisher:
    """Writes snapshots in Kafka transactions, as the job's exactly-once sink does; remembers what it committed."""

    def __init__(self, config):
        self.topic = config["topics.snapshots.name"]
        self.features_topic = config["topics.features.name"]
        self.features = config["features.columns"]
        self.schema_hash = feature_schema_hash(self.features)
        self.keyring = stack.keyring(config)
        self.producer = KafkaProducer(bootstrap_servers=stack.BOOTSTRAP, transactional_id=f"test-{uuid.uuid4().hex}")
        self.producer.init_transactions()
        self.committed = collections.defaultdict(set)

    def model(self, version):
        """Trained on the first `version` Bananas samples, so a test can rebuild any version exactly."""
        model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
        for x, y in datasets.Bananas().take(version):
            model.learn_one(dict(zip(self.features, (x["1"], x["2"]))), y)
        return model

    def envelope(self, key, version, **changes):
        now_ms = int(time.time() * 1000)
        fields = dict(
            window_end_ms=now_ms,
            watermark_ms=now_ms - 1,
            emitted_at_ms=now_ms,
            feature_schema_hash=self.schema_hash,
            payload=dump_model(self.model(version)),
        )
        return encode(snapshot(key, version, **{**fields, **changes}), self.keyring)

    def transaction(self, records, commit=True):
        """records: (key, envelope bytes) pairs, written in one transaction that is committed or aborted."""
        self.producer.begin_transaction()
        for key, value in records:
            self.producer.send(self.topic, key=key.encode(), value=value)
        if commit:
            self.producer.commit_transaction()
        else:
            self.producer.flush()  # on the broker, then aborted: read_committed readers must skip them
            self.producer.abort_transaction()

    def publish(self, versions: dict, commit=True):
        """One valid snapshot per key, of the given versions."""
        self.transaction([(key, self.envelope(key, version)) for key, version in versions.items()], commit)
        if commit:
            for key, version in versions.items():
                self.committed[key].add(version)

    def publish_features(self, rows: dict, window_end_ms: int):
        """One feature row per key (its features by name), as the job's latest_features sink writes them."""
        self.producer.begin_transaction()
        for key, features in rows.items():
            row = {
                "key": key,
                "window_end_ms": window_end_ms,
                "feature_schema_hash": self.schema_hash,
                "features": features,
            }
            self.producer.send(self.features_topic, key=key.encode(), value=json.dumps(row).encode())
        self.producer.commit_transaction()

    def close(self):
        self.producer.close()


@pytest.fixture
def config(tmp_path):
    """conf/job.yaml on topics of this test's own."""
    return stack.isolated_config(tmp_path, "conf/job.yaml")


@pytest.fixture
def publisher(config):
    publisher = Publisher(config)
    yield publisher
    publisher.close()


def responds(replica):
    try:
        replica.http("GET", "/healthz")
        return True
    except OSError:
        return False


def served_versions(replica):
    return {key: replica.http("GET", f"/models/{key}")[1].get("model_version") for key in KEYS}


@pytest.mark.timeout(120)
def test_replicas_converge_on_committed_versions_and_a_late_one_catches_up(config, publisher, replicas):
    for version in range(1, 11):
        publisher.publish({key: version for key in KEYS})
    publisher.publish({"book-1": 50}, commit=False)
    first = replicas(config, 18201)
    first.wait_ready()
    assert served_versions(first) == {key: 10 for key in KEYS}

    for version in (12, 11, 12):  # reordered and duplicated: harmless
        publisher.publish({key: version for key in KEYS})
    publisher.publish({"book-2": 60}, commit=False)
    late = replicas(config, 18202)
    late.wait_ready()
    # Ready means caught up with every snapshot committed before the replica started.
    assert served_versions(late) == {key: 12 for key in KEYS}
    assert late.http("GET", "/readyz")[0] == 200
    stack.wait_until(lambda: served_versions(first) == served_versions(late), 30, "both replicas on the same versions")

    for replica in (first, late):
        assert replica.metric("serving_snapshots_rejected_total") == 0
        assert replica.metric("serving_snapshots_stale_total") >= 3  # version 11 after 12, then 12 again
        stack.wait_until(lambda: replica.metric("serving_consumer_lag") == 0, 10, f"no lag on port {replica.port}")
    assert first.metric("serving_snapshots_applied_total") == 3 * 11
    assert late.metric("serving_snapshots_applied_total") == 3 * 11

    # A replica restarted mid-stream catches up and serves the newest versions.
    first.stop()
    publisher.publish({key: 13 for key in KEYS})
    restarted = replicas(config, 18201)
    restarted.wait_ready()
    assert served_versions(restarted) == {key: 13 for key in KEYS}


@pytest.mark.timeout(120)
def test_refused_snapshots_are_counted_and_the_old_model_keeps_serving(config, publisher, replicas):
    publisher.publish({"book-1": 4})
    replica = replicas(config, 18203)
    replica.wait_ready()

    publisher.transaction(
        [
            ("book-1", bytes(random.Random(7).getrandbits(8) for _ in range(300))),
            ("book-1", publisher.envelope("book-1", 9, feature_schema_hash="0123456789abcdef")),  # other features
            ("book-1", publisher.envelope("book-1", 10, format_version=FORMAT_VERSION + 1)),  # from a newer writer
            ("book-1", publisher.envelope("book-1", 11, payload=b"\x80\x05not a pickle")),
            ("book-2", publisher.envelope("book-2", 1)),  # a good one after the bad ones
        ]
    )
    stack.wait_until(
        lambda: replica.http("GET", "/models/book-2")[0] == 200, 30, "the good snapshot after the bad ones"
    )

    assert replica.metric('serving_snapshots_rejected_total{reason="corrupt"}') == 2
    assert replica.metric('serving_snapshots_rejected_total{reason="schema"}') == 1
    assert replica.metric('serving_snapshots_rejected_total{reason="version"}') == 1
    x = {"x1_avg": 0.2, "x2_avg": -0.3}
    status, answer = replica.http("POST", "/predict", {"key": "book-1", "features": x})
    assert status == 200 and answer["model_version"] == 4
    assert answer["prediction"] == publisher.model(4).predict_proba_one(x)[True]
    assert replica.http("GET", "/healthz") == (200, {"status": "ok"})


@pytest.mark.timeout(120)
def test_no_request_fails_while_models_swap(config, publisher, replicas):
    publisher.publish({key: 1 for key in KEYS})
    replica = replicas(config, 18204)
    replica.wait_ready()
    x = {"x1_avg": 0.1, "x2_avg": 0.2}
    expected = {version: publisher.model(version).predict_proba_one(x)[True] for version in range(1, 31)}

    def keep_publishing():
        for version in range(2, 31):
            publisher.publish({key: version for key in KEYS})
            publisher.publish({"book-3": 1000 + version}, commit=False)
            time.sleep(0.05)

    swapping = threading.Thread(target=keep_publishing)
    answers, failures = [], []

    def client():
        connection = http.client.HTTPConnection("127.0.0.1", replica.port, timeout=10)
        while swapping.is_alive():
            key = random.choice(KEYS)
            batch = random.random() < 0.2
            path, body = (
                ("/predict/batch", {"requests": [{"key": k, "features": x} for k in KEYS]})
                if batch
                else ("/predict", {"key": key, "features": x})
            )
            try:
                connection.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
                response = connection.getresponse()
                status, answer = response.status, json.loads(response.read())
            except (OSError, http.client.HTTPException, ValueError) as e:
                failures.append(repr(e))
                continue
            if status != 200:
                failures.append((status, answer))
            else:
                answers.extend(zip(KEYS, answer["results"]) if batch else [(key, answer)])
        connection.close()

    clients = [threading.Thread(target=client) for _ in range(3)]
    swapping.start()
    for c in clients:
        c.start()
    swapping.join(timeout=90)
    for c in clients:
        c.join(timeout=15)

    assert failures == []
    assert len(answers) > 50
    wrong = [
        (key, a)
        for key, a in answers
        if a["model_version"] not in publisher.committed[key] or a["prediction"] != expected[a["model_version"]]
    ]
    assert wrong == [], "every answer comes from one committed version, whole"
    assert len({a["model_version"] for _, a in answers}) > 5, "requests should span many swaps"
    stack.wait_until(lambda: served_versions(replica) == {key: 30 for key in KEYS}, 30, "the last versions")


@pytest.mark.timeout(120)
def test_a_replica_started_before_its_topics_exist_waits_for_them(replicas, tmp_path):
    config = derive_config(
        load_config(os.path.join(stack.PROJECT_DIR, "conf/job.yaml")),
        str(tmp_path / "conf" / "job.yaml"),
        uuid.uuid4().hex[:8],
    )
    replica = replicas(config, 18205)
    stack.wait_until(lambda: replica.process.poll() is None and responds(replica), 30, "the replica to answer HTTP")
    assert replica.http("GET", "/readyz")[0] == 503
    assert replica.http("GET", "/healthz") == (200, {"status": "ok"})  # waiting is not failing

    ensure_topics(stack.BOOTSTRAP, declared_topics(config))
    publisher = Publisher(config)
    try:
        publisher.publish({"book-1": 3})
    finally:
        publisher.close()
    replica.wait_ready()
    stack.wait_until(lambda: served_versions(replica)["book-1"] == 3, 30, "the first snapshot")


@pytest.mark.timeout(120)
def test_a_rollback_record_brings_back_the_good_version_of_its_key_only(config, publisher, replicas, tmp_path):
    for version in (1, 2):
        publisher.publish({"book-1": version, "book-2": version})
    replica = replicas(config, 18206)
    replica.wait_ready()
    x = {"x1_avg": 0.2, "x2_avg": -0.3}
    by_version = {version: publisher.model(version).predict_proba_one(x)[True] for version in (1, 2)}
    assert by_version[1] != by_version[2]
    assert replica.http("POST", "/predict", {"key": "book-1", "features": x})[1]["prediction"] == by_version[2]

    # As the job writes it: a new version, v1's model again.
    rollback = {"from_version": 2, "to_version": 1, "reason": "v2 scored 0.71 on live rows against 0.52"}
    publisher.transaction(
        [
            (
                "book-1",
                publisher.envelope(
                    "book-1", 3, payload=dump_model(publisher.model(1)), extra={"rollback": rollback, "held_back": 1}
                ),
            )
        ]
    )
    stack.wait_until(lambda: replica.http("GET", "/models/book-1")[1].get("model_version") == 3, 30, "the rollback")

    status, described = replica.http("GET", "/models/book-1")
    assert status == 200 and described["history_versions"] == [1, 2, 3] and described["held_back"] == 1
    assert {**described["rollback"], "applied_at": None} == {
        **rollback,
        "version": 3,
        "source": "history",
        "applied_at": None,
    }
    status, answer = replica.http("POST", "/predict", {"key": "book-1", "features": x})
    assert status == 200 and (answer["model_version"], answer["prediction"]) == (3, by_version[1])
    status, other = replica.http("GET", "/models/book-2")
    assert status == 200 and other["model_version"] == 2 and other["rollback"] is None
    assert replica.http("POST", "/predict", {"key": "book-2", "features": x})[1]["prediction"] == by_version[2]
    assert replica.metric('serving_rollbacks_total{source="history"}') == 1
    assert replica.metric("serving_snapshots_rejected_total") == 0

    # A replica holding only the served version gets v1's model from the record's payload.
    forgetful = replicas(
        stack.write_config(config, tmp_path / "forgetful.yaml", {"serving": {"history_per_key": 1}}), 18207
    )
    forgetful.wait_ready()
    assert forgetful.http("GET", "/models/book-1")[1]["rollback"]["source"] == "payload"
    assert forgetful.http("POST", "/predict", {"key": "book-1", "features": x})[1]["prediction"] == by_version[1]
    assert forgetful.metric('serving_rollbacks_total{source="payload"}') == 1


@pytest.mark.timeout(150)
def test_two_replicas_each_holding_half_the_partitions_serve_their_keys_and_route_the_others(replicas, tmp_path):
    config = stack.isolated_config(
        tmp_path, "conf/job.yaml", {"topics": {"snapshots": {"partitions": 4}, "features": {"partitions": 4}}}
    )
    by_partition = collections.defaultdict(list)
    for key in (f"item-{i}" for i in range(100)):
        if len(by_partition[partition_of(key, 4)]) < 3:
            by_partition[partition_of(key, 4)].append(key)
    keys = [key for p in range(4) for key in by_partition[p]]
    assert len(keys) == 12
    versions = {key: 2 + i for i, key in enumerate(keys)}  # a different model per key
    features = {key: {"x1_avg": 0.1 * i - 0.5, "x2_avg": 0.3 - 0.05 * i} for i, key in enumerate(keys)}
    publisher = Publisher(config)
    try:
        publisher.publish(versions)
        publisher.publish_features(features, int(time.time() * 1000))
    finally:
        publisher.close()
    # The broker put every record where partition_of says: the producer's partitioner, as the job's sinks.
    for topic in (config["topics.snapshots.name"], config["topics.features.name"]):
        placed = {r.key.decode(): r.partition for r in stack.read_topic(topic, len(keys), 15)}
        assert placed == {key: partition_of(key, 4) for key in keys}, topic

    low = replicas(config, 18208, "--partitions", "0,1")
    high = replicas(stack.write_config(config, tmp_path / "high.yaml", {"serving": {"partitions": [2, 3]}}), 18209)
    for replica, held in ((low, [0, 1]), (high, [2, 3])):
        replica.wait_ready()
        status, ready = replica.http("GET", "/readyz")
        assert status == 200 and ready == {"ready": True, "models": 6, "partitions": held, "partition_count": 4}
        # Its memory holds its half only, and its metrics count only what it follows.
        assert replica.metric("serving_models") == 6
        assert replica.metric("serving_feature_rows") == 6
        assert replica.metric("serving_partitions_followed") == 2
        assert replica.metric("serving_snapshots_applied_total") == 6
        stack.wait_until(lambda: replica.metric("serving_consumer_lag") == 0, 10, f"no lag on port {replica.port}")

    for key in keys:
        partition = partition_of(key, 4)
        right, wrong = (low, high) if partition < 2 else (high, low)
        status, answer = right.http("POST", "/predict", {"key": key})  # with the key's stored features
        expected = publisher.model(versions[key]).predict_proba_one(features[key])[True]
        assert status == 200 and (answer["model_version"], answer["prediction"]) == (versions[key], expected), key
        status, refused = wrong.http("POST", "/predict", {"key": key})
        assert status == 421 and (refused["partition"], refused["partitions"]) == (partition, 4), key
        assert f"key '{key}' is on partition {partition} of {config['topics.snapshots.name']}" in refused["error"]
        assert wrong.http("GET", f"/models/{key}")[0] == 421
        assert right.http("GET", f"/features/{key}")[1]["features"] == features[key]

    # /recommend over every key: each replica ranks its own and names where the others live.
    status, ranked = low.http("POST", "/recommend", {"n": 12, "candidates": keys})
    assert status == 200 and sorted(r["key"] for r in ranked["ranking"]) == sorted(by_partition[0] + by_partition[1])
    assert ranked["elsewhere"] == {"2": by_partition[2], "3": by_partition[3]}
    assert low.metric('serving_requests_total{path="/predict",status="421"}') == 6


def reader_processes(replica) -> list[int]:
    """The replica's topic reader process(es): multiprocessing's spawned children (not its resource tracker)."""
    found = []
    for pid in stack.descendants(replica.process.pid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"spawn_main" in f.read() and stack.alive(pid):
                    found.append(pid)
        except FileNotFoundError:
            pass
    return found


@pytest.mark.timeout(120)
def test_a_reader_process_that_dies_turns_the_replica_not_ready_until_a_new_one_caught_up(
    config, publisher, replicas, tmp_path
):
    publisher.publish({key: 1 for key in KEYS})
    # By default the follower thread reads the topics: no process of its own.
    default = replicas(config, 18207)
    default.wait_ready()
    assert reader_processes(default) == [] and served_versions(default) == {key: 1 for key in KEYS}
    replica = replicas(
        stack.write_config(config, tmp_path / "reader" / "job.yaml", {"serving": {"reader_process": True}}), 18206
    )
    replica.wait_ready()
    [reader] = reader_processes(replica)

    os.kill(reader, signal.SIGKILL)  # as the kernel's out-of-memory killer would
    stack.wait_until(lambda: replica.http("GET", "/readyz")[0] == 503, 5, "readiness to fail")
    assert replica.http("GET", "/healthz") == (200, {"status": "ok"})  # restarting the reader is not failing
    # Meanwhile the models held keep serving.
    status, answer = replica.http("POST", "/predict", {"key": "book-1", "features": {"x1_avg": 0.1, "x2_avg": 0.2}})
    assert status == 200 and answer["model_version"] == 1

    publisher.publish({key: 2 for key in KEYS})
    replica.wait_ready(30)
    stack.wait_until(lambda: served_versions(replica) == {key: 2 for key in KEYS}, 30, "the versions after the restart")
    [restarted] = reader_processes(replica)
    assert restarted != reader and not stack.alive(reader)
    assert replica.metric("serving_snapshots_applied_total") == 2 * len(KEYS)  # v1 read again is stale

    # A replica killed outright cannot stop its reader: the reader sees it and ends by itself.
    replica.process.kill()
    replica.process.wait()
    stack.wait_until(lambda: not stack.alive(restarted), 10, "the orphaned reader to end")
