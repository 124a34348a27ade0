"""Idle keys expire on the real stack (issue #18, item 2).

1,000 keys have a row in every window of the first five; then only the even half go on. With
`lifecycle.idle_ttl_seconds: 3` (three one-second windows) the silent half expire once window 7 has
closed: the learner counts them (`keys_expired`), writes tombstones to the compacted snapshot and
features topics, and a replica following them drops their models and features. One silent key comes
back once they have expired (the events of windows 15 on are sent then) and learns from scratch. After
the broker's log cleaner has compacted the topics (tiny segments), they hold a value only for the keys
still alive, and a replica started afresh on them serves exactly those.
"""

import time

import pytest
from kafka import KafkaProducer

from scripts import stack
from tests.integration.learner_rows import WINDOW_MS, per_window_settings, synthetic_row

KEYS = [f"user-{i:04d}" for i in range(1000)]
ACTIVE = KEYS[::2]
SILENT = KEYS[1::2]
RETURNING = SILENT[0]
EVERYONE_WINDOWS = range(5)
ACTIVE_WINDOWS = range(5, 18)
RETURN_WINDOW = 15
TTL_S = 3
SEGMENT_MS = 100
ACTIVE_SET = set(ACTIVE)
# The keys alive at the end: the active half, and the silent key that came back.
ALIVE = ACTIVE_SET | {RETURNING}


def events(windows, keys=KEYS) -> list:
    """The events of `windows` for `keys`: all in the first five windows, then the even half, and the
    first odd key again in RETURN_WINDOW."""
    rows = [(w, k, key) for w in EVERYONE_WINDOWS for k, key in enumerate(keys)]
    rows += [(w, k, key) for w in ACTIVE_WINDOWS for k, key in enumerate(keys) if k % 2 == 0]
    rows.append((RETURN_WINDOW, 1, keys[1]))
    out = []
    for w, k, key in sorted((row for row in rows if row[0] in windows), key=lambda row: row[0]):
        x, y = synthetic_row(k, w)
        out.append({"entity": key, "x1": x["x1_avg"], "x2": x["x2_avg"], "label": y, "ts": w * WINDOW_MS + 1})
    return out


# Tombstones themselves stay for delete.retention.ms (a day): one removed before a replica has read it
# would leave that replica serving the key. A key's values stay min.compaction.lag.ms: the cleaner may
# otherwise remove one its tombstone supersedes before the live replica has read it (it happened on a
# busy machine), and the replica, never having held the key, rightly does not count its removal.
COMPACTION_LAG_MS = 10_000
COMPACTED = {
    "cleanup.policy": "compact",
    "segment.ms": SEGMENT_MS,
    "min.cleanable.dirty.ratio": 0.01,
    "min.compaction.lag.ms": COMPACTION_LAG_MS,
}


def values_left(topic: str) -> tuple[dict, int]:
    """{key: number of non-null records} still in the topic's log, and the number of tombstones."""
    counts, tombstones = {}, 0
    for record in stack.read_topic(topic, 10**9, timeout_s=3, read_committed=False):
        if record.value is None:
            tombstones += 1
        else:
            key = record.key.decode()
            counts[key] = counts.get(key, 0) + 1
    return counts, tombstones


def lifecycle_config(tmp_path, overrides=None):
    return stack.isolated_config(
        tmp_path,
        "conf/job.yaml",
        # A partition read late would also make active keys look silent (per_window_settings).
        per_window_settings(
            **{
                "lifecycle": {"idle_ttl_seconds": TTL_S},
                "topics": {"snapshots": {"config": COMPACTED}, "features": {"config": COMPACTED}},
                **(overrides or {}),
            }
        ),
    )


def expired(job_id) -> float:
    return stack.job_metrics(job_id, "keys_expired").get("keys_expired")


@pytest.mark.timeout(420)
def test_silent_keys_expire_from_state_replicas_and_compacted_topics_and_a_returning_key_starts_afresh(
    services, flink_job, replicas, tmp_path
):
    config = lifecycle_config(tmp_path)
    job_id = flink_job("jobs/learner_job.py", "--config", config.source)
    live = replicas(config, 18601)
    live.wait_ready()
    stack.produce_json(config["topics.events.name"], events(range(RETURN_WINDOW)), key_field="entity")
    stack.wait_until(
        lambda: stack.job_metrics(job_id, "keys_expired").get("keys_expired") == len(SILENT),
        120,
        lambda: f"keys_expired {stack.job_metrics(job_id, 'keys_expired')} to be {len(SILENT)}",
    )
    # The last window (17) stays open: the active keys' last learned window is 16, the returner's 15.
    stack.produce_json(config["topics.events.name"], events(range(RETURN_WINDOW, 18)), key_field="entity")

    def replica_holds_the_alive_keys():
        return (
            live.metric("serving_models") == len(ALIVE)
            and live.metric("serving_feature_rows") == len(ALIVE)
            and live.http("GET", f"/models/{RETURNING}")[0] == 200
        )

    stack.wait_until(
        replica_holds_the_alive_keys,
        60,
        lambda: (
            f"the live replica to serve {len(ALIVE)} keys: "
            f"models {live.metric('serving_models')}, features {live.metric('serving_feature_rows')}"
        ),
    )
    for key in SILENT[1:]:
        assert live.http("GET", f"/models/{key}")[0] == 404, key
    assert live.http("GET", f"/models/{ACTIVE[7]}")[1]["n_learned"] == len(EVERYONE_WINDOWS) + 12
    # Came back after expiring: a new key, learning from its first row again (cold start).
    returned = live.http("GET", f"/models/{RETURNING}")[1]
    assert (returned["model_version"], returned["n_learned"], returned["window_end_ms"]) == (
        1,
        1,
        (RETURN_WINDOW + 1) * WINDOW_MS,
    ), returned
    assert live.metric("serving_keys_removed_total") == 2 * len(SILENT)
    assert stack.job_metrics(job_id, "keys_expired") == {"keys_expired": len(SILENT)}

    # A tombstone on every partition of both topics closes the segments holding the job's last records,
    # so that the cleaner compacts them (it never touches a partition's active segment).
    time.sleep(SEGMENT_MS * 2 / 1000)
    producer = KafkaProducer(bootstrap_servers=stack.BOOTSTRAP)
    topics = [config["topics.snapshots.name"], config["topics.features.name"]]
    for topic in topics:
        for partition in range(config["topics.snapshots.partitions"]):
            producer.send(topic, key=f"roll-{partition}".encode(), value=None, partition=partition)
    producer.flush(timeout=30)
    producer.close(timeout=10)

    left = {}

    def compacted():
        for topic in topics:
            left[topic] = values_left(topic)
        return all(counts == dict.fromkeys(ALIVE, 1) for counts, _ in left.values())

    started = time.monotonic()
    stack.wait_until(
        compacted,
        120,
        lambda: (
            "compaction to one value per alive key: "
            + ", ".join(
                f"{topic}: {len(counts)} keys, {sum(counts.values())} values, {tombstones} tombstones"
                for topic, (counts, tombstones) in left.items()
            )
        ),
    )
    print(
        f"compacted in {time.monotonic() - started:.1f}s; tombstones left: "
        f"{ {topic: tombstones for topic, (_, tombstones) in left.items()} }"
    )

    fresh = replicas(config, 18602)
    fresh.wait_ready()
    assert (fresh.metric("serving_models"), fresh.metric("serving_feature_rows")) == (len(ALIVE), len(ALIVE))
    assert fresh.http("GET", f"/models/{SILENT[3]}")[0] == 404
    assert fresh.http("GET", f"/models/{RETURNING}")[1]["model_version"] == 1
    assert fresh.metric("serving_snapshots_rejected_total") == 0


@pytest.mark.timeout(420)
def test_an_expiry_not_yet_written_to_state_is_replayed_by_a_restored_job_never_undone_or_sent_twice(
    services, flink_job, replicas, tmp_path
):
    """With `learner.state_write_every` past the run's calls, every step (the expiry among them) is
    only recorded in `learned-unwritten-batches` when the job stops with a savepoint; the job restored
    from it replays them: the expired keys stay gone (not expired, counted or tombstoned again), and
    the key that comes back after the restore starts afresh rather than from its replayed state."""
    keys = [f"small-{i:03d}" for i in range(100)]
    # Not compacted: the returning key's tombstone stays beside its new model, so every one is counted.
    config = lifecycle_config(
        tmp_path,
        {"learner": {"state_write_every": 10_000}, "topics": {"snapshots": {"config": {"cleanup.policy": "delete"}}}},
    )
    topic = config["topics.events.name"]
    job_id = flink_job("jobs/learner_job.py", "--config", config.source)
    stack.produce_json(topic, events(range(RETURN_WINDOW), keys), key_field="entity")
    stack.wait_until(lambda: expired(job_id) == 50, 120, lambda: f"keys_expired {expired(job_id)} to be 50")
    savepoint = stack.script("savepoint.sh", "--stop", job_id).strip().splitlines()[-1]
    restored = flink_job("-s", savepoint, "jobs/learner_job.py", "--config", config.source)
    stack.produce_json(topic, events(range(RETURN_WINDOW, 18), keys), key_field="entity")

    replica = replicas(config, 18603)
    replica.wait_ready()
    stack.wait_until(
        lambda: (
            replica.http("GET", f"/models/{keys[1]}")[0] == 200
            and replica.http("GET", f"/models/{keys[0]}")[1].get("n_learned") == 17
        ),
        120,
        "the returning key's model and the active keys' 17th window",
    )
    assert replica.http("GET", f"/models/{keys[1]}")[1]["model_version"] == 1
    assert replica.metric("serving_models") == 51
    assert expired(restored) == 0
    tombstones = [
        r.key.decode() for r in stack.read_topic(config["topics.snapshots.name"], None, 30) if r.value is None
    ]
    assert sorted(tombstones) == sorted(keys[1::2])
