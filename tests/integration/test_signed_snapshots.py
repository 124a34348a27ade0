"""Signed snapshots and job lineages on the real Kafka and Flink, with serving replicas as processes.

One job, and replicas following its snapshot topic; forged records are written onto that topic (a
code-running payload unsigned, signed with a wrong key, and validly signed but naming a forbidden
class, each at a version of 2**62): no code runs, each is counted, the served versions stay. Then the
job is cancelled and a fresh job (no savepoint) runs on the same topics: its versions start at 1
again, and every replica, a restarted one too, serves its models instead of the old job's higher
versions.
"""

import json
import pickle
import struct

import pytest
from kafka import KafkaProducer

from scripts import stack
from tests.unit.models import snapshot
from udfs.envelope import EnvelopeError, decode, encode, feature_schema_hash
from udfs.signing import Keyring

KEYS = ["a", "b", "c"]
WINDOW_MS = 2000


class RunsCode:
    """A payload that creates `marker` when unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def events(windows):
    return [
        {"entity": key, "x1": float(w % 7) - 3, "x2": float(i) - 1, "label": (w + i) % 3 == 0, "ts": w * WINDOW_MS + 1}
        for w in windows
        for i, key in enumerate(KEYS)
    ]


def close_windows_before(window):
    """An event on every partition in `window`: the windows before it close (no partition holds back)."""
    return {"entity": "closer", "x1": 0.0, "x2": 0.0, "label": False, "ts": window * WINDOW_MS + 1}


def served(replica):
    """key -> (generation, model_version) the replica serves."""
    described = {key: replica.http("GET", f"/models/{key}")[1] for key in KEYS}
    return {key: (d.get("generation"), d.get("model_version")) for key, d in described.items()}


def forged_records(config, marker):
    """(what, envelope) records that must not be served, each at version 2**62."""
    payload = pickle.dumps(RunsCode(marker))
    fields = dict(
        version=2**62,
        n_learned=1,
        generation=2**62,
        payload=payload,
        feature_schema_hash=feature_schema_hash(config["features.columns"]),
    )
    meta = json.dumps({**snapshot("a", **fields).metadata(), "format_version": 2}).encode()
    unsigned = struct.pack(">4sBI", b"RTML", 2, len(meta)) + meta + payload
    wrong_key = encode(snapshot("b", **fields), Keyring({"local": b"a guess at the local key, 32 bytes"}, "local"))
    forbidden = encode(snapshot("c", **fields), stack.keyring(config))
    return [("a", unsigned), ("b", wrong_key), ("c", forbidden)]


def newest_snapshot_of_each_key(config) -> dict:
    """key -> its envelope of the highest (generation, model_version) that verifies, the forged ones left out."""
    newest, keys = {}, stack.keyring(config)
    for record in stack.read_topic(config["topics.snapshots.name"], 10**9, timeout_s=3):
        try:
            snapshot = decode(record.value, keys)
        except EnvelopeError:
            continue
        if (
            snapshot.key in KEYS
            and snapshot.generation < 2**62
            and (snapshot.key not in newest or snapshot.order > newest[snapshot.key].order)
        ):
            newest[snapshot.key] = snapshot
    return newest


def rejected(replica):
    return {
        reason: replica.metric(f'serving_snapshots_rejected_total{{reason="{reason}"}}')
        for reason in ("signature", "forbidden", "corrupt")
    }


@pytest.mark.timeout(420)
def test_forged_snapshots_run_nothing_and_a_fresh_job_replaces_the_old_ones_models(
    services, flink_job, replicas, tmp_path
):
    config = stack.isolated_config(
        tmp_path,
        "conf/job.yaml",
        {
            # Closers move the watermark on every partition; no partition is taken for idle meanwhile.
            "source": {"watermark_delay_seconds": 0, "idle_timeout": "10 min"},
            "window": {"size_seconds": WINDOW_MS // 1000},
            "snapshots": {"policy": "every_window"},
        },
    )
    topic = config["topics.events.name"]
    first_job = flink_job("jobs/learner_job.py", "--config", config.source)
    following, restarted = replicas(config, 18301), replicas(config, 18302)
    for replica in (following, restarted):
        replica.wait_ready()
    stack.produce_json(topic, events(range(0, 30)), "entity")
    stack.produce_to_every_partition(topic, close_windows_before(30))
    stack.wait_until(
        lambda: {v for _, v in served(following).values()} == {30},
        120,
        lambda: f"the first job's version 30 of every key; served {served(following)}",
    )
    first = served(following)
    old_generation = first["a"][0]
    assert {g for g, _ in first.values()} == {old_generation} and old_generation > 0

    # Forged snapshots, each at version 2**62 with a payload that would create `marker`.
    marker = tmp_path / "forged-payload-ran"
    producer = KafkaProducer(bootstrap_servers=stack.BOOTSTRAP)
    for key, value in forged_records(config, marker):
        producer.send(config["topics.snapshots.name"], key=key.encode(), value=value)
    producer.flush(timeout=30)
    producer.close()
    for replica in (following, restarted):
        stack.wait_until(
            lambda: rejected(replica) == {"signature": 2, "forbidden": 1, "corrupt": 0},
            30,
            lambda: f"the forged records rejected on port {replica.port}: {rejected(replica)}",
        )
        assert served(replica) == first
    assert not marker.exists(), "a forged payload ran code in a replica"
    restarted.stop()

    # A fresh job on the same topics, without a savepoint, reading the events that come after it started:
    # its keys start again from version 1. Until its source is reading, events are missed: more follow.
    stack.cancel(first_job)
    flink_job(
        "jobs/learner_job.py",
        "--config",
        stack.write_config(config, tmp_path / "fresh.yaml", {"source": {"startup_mode": "latest-offset"}}).source,
    )
    newest = {}

    def fresh_job_published():
        newest.update(newest_snapshot_of_each_key(config))
        return all(newest[key].generation > old_generation for key in KEYS)

    for first_window in range(30, 60, 5):
        stack.produce_json(topic, events(range(first_window, first_window + 5)), "entity")
        stack.produce_to_every_partition(topic, close_windows_before(first_window + 5))
        try:
            stack.wait_until(fresh_job_published, 15, "the fresh job's snapshots")
            break
        except AssertionError:
            continue
    assert fresh_job_published(), f"the fresh job published no snapshot of every key: {newest}"
    # Every partition was read in the last round (each key's partition was, in that round or before): every
    # key learns its last window.
    last_window_end = (first_window + 5) * WINDOW_MS
    stack.wait_until(
        lambda: fresh_job_published() and all(newest[key].window_end_ms == last_window_end for key in KEYS),
        30,
        lambda: f"every key's window ending at {last_window_end}: {newest}",
    )
    new_generation = newest["a"].generation
    expected = {key: (new_generation, s.model_version) for key, s in newest.items()}
    assert all(version < 30 for _, version in expected.values()), f"the new job's versions start over: {expected}"
    # Every new version reaches the following replica within a snapshot interval (a window here) of its
    # publication, although the replica held higher versions of the old job.
    stack.wait_until(
        lambda: served(following) == expected,
        WINDOW_MS / 1000 + 5,
        lambda: f"{expected} served; serving {served(following)}",
    )
    for key in KEYS:
        described = following.http("GET", f"/models/{key}")[1]
        assert described["applied_at"] - newest[key].emitted_at_ms / 1000 <= WINDOW_MS / 1000, described
        assert described["key_id"] == "local"

    # A replica started again reads the whole topic, the old job's v30 and the forged records included.
    again = replicas(config, 18302)
    again.wait_ready()
    assert served(again) == expected
    assert rejected(again) == {"signature": 2, "forbidden": 1, "corrupt": 0}
    probe = {"x1_avg": 1.5, "x2_avg": -0.5}
    for key in KEYS:
        answer = again.http("POST", "/predict", {"key": key, "features": probe})[1]
        assert answer["prediction"] == newest[key].model().predict_proba_one(probe)[True]
    assert not marker.exists()
