"""A new replica replays a compacted snapshot topic that aborted transactions wrote to.

Signed envelopes of 50 keys, made by the learner's own code (`Learner.publish` with the config's
keyring), go onto a compacted snapshot topic with tiny segments (`segment.ms` 100) through
kafka-python's transactional producer, one transaction per round; some rounds are aborted, and two
aborted transactions at the end carry versions (and, for some keys, a later generation) above every
key's last committed one. Once the broker's log cleaner has compacted every closed segment (exactly
one record per key left there, no aborted record), a replica started afresh must serve, for every
key, exactly its last committed version, whose model predicts as that envelope's does; keys written
only in aborted transactions are not served at all.
"""

import time

import pytest
from kafka import KafkaProducer

from scripts import stack
from udfs.envelope import decode
from udfs.learner import Learner, LearnerSettings

KEYS = [f"k{i:02d}" for i in range(50)]
# Keys that only aborted transactions ever wrote.
GHOSTS = ["ghost-a", "ghost-b", "ghost-c"]
ROUNDS = 15
ABORTED_ROUNDS = {4, 9, 10}
SEGMENT_MS = 100
PROBE = {"x1_avg": 0.7, "x2_avg": -1.2}


def last_round(key_index: int) -> int:
    """The last round writing a key: 8..15, so keys end in different rounds, some in an aborted one."""
    return 8 + key_index % 8


def row(key_index: int, version: int):
    x = {"x1_avg": ((key_index * 7 + version * 3) % 11) / 2 - 2.5, "x2_avg": ((key_index + version * 5) % 9) / 3 - 1.5}
    return x, (x["x1_avg"] + x["x2_avg"] + (key_index % 3) - 1) > 0


class Keys:
    """Each key's learner state: every envelope is the learner's publish of its model after one more row,
    of the key's next window (so every envelope is a new version)."""

    def __init__(self, learner: Learner):
        self.learner = learner
        self.states = {}

    def envelope(self, key: str, generation_offset: int = 0) -> tuple[bytes, int]:
        state = self.states.get(key)
        if state is None or generation_offset:
            state = self.learner.new_state()
            state.generation += generation_offset
            if not generation_offset:
                self.states[key] = state
        index = KEYS.index(key) if key in KEYS else 99
        x, y = row(index, state.model_version + 1)
        window_end_ms = state.last_window_end_ms + 1000
        self.learner.process(state, x, y, window_end_ms)
        return self.learner.publish(key, state, window_end_ms, now_ms=int(time.time() * 1000)), state.model_version


class Transactions:
    """One kafka-python transactional producer; `write` sends (key, value, partition) records in one
    transaction and commits or aborts it, then waits past `segment.ms` so that the next one starts a
    segment of its own."""

    def __init__(self, topic: str, transactional_id: str):
        self.topic = topic
        self.producer = KafkaProducer(bootstrap_servers=stack.BOOTSTRAP, transactional_id=transactional_id)
        self.producer.init_transactions()
        self.produced = 0

    def write(self, records, commit: bool) -> None:
        self.producer.begin_transaction()
        for key, value, partition in records:
            self.producer.send(self.topic, key=key.encode(), value=value, partition=partition)
        self.producer.flush(timeout=30)
        if commit:
            self.producer.commit_transaction()
        else:
            self.producer.abort_transaction()
        self.produced += len(records)
        time.sleep(SEGMENT_MS * 1.5 / 1000)

    def close(self) -> None:
        self.producer.close(timeout=10)


def records_left(topic: str) -> list:
    """Every record still in the log from its start, aborted ones included (read_uncommitted)."""
    return stack.read_topic(topic, 10**9, timeout_s=3, read_committed=False)


@pytest.mark.timeout(240)
def test_a_new_replica_serves_exactly_the_last_committed_version_of_a_compacted_topic(services, replicas, tmp_path):
    config = stack.isolated_config(
        tmp_path,
        "conf/job.yaml",
        {
            "topics": {
                "snapshots": {
                    "config": {"cleanup.policy": "compact", "segment.ms": SEGMENT_MS, "min.cleanable.dirty.ratio": 0.01}
                }
            }
        },
    )
    topic = config["topics.snapshots.name"]
    keys = Keys(Learner(LearnerSettings.from_config(config), stack.keyring(config)))
    committed = {}  # key -> (envelope, version) of its last committed record
    transactions = Transactions(topic, f"{config['sinks.transactional_id_prefix']}-replay")
    try:
        for round_ in range(1, ROUNDS + 1):
            commit = round_ not in ABORTED_ROUNDS
            batch = []
            for i, key in enumerate(KEYS):
                if round_ <= last_round(i):
                    # One or two versions per round: compaction also drops a committed record that a
                    # later one of the same transaction replaces.
                    for _ in range(1 + (i + round_) % 2):
                        envelope, version = keys.envelope(key)
                        batch.append((key, envelope, None))
                        if commit:
                            committed[key] = (envelope, version)
            if not commit:
                batch += [(ghost, keys.envelope(ghost)[0], None) for ghost in GHOSTS]
            transactions.write(batch, commit)
        # Aborted, with versions above every key's last committed one; for every third key also a
        # later job lineage (a fresh job's version 1): neither may be served.
        transactions.write(
            [(key, keys.envelope(key)[0], None) for key in KEYS]
            + [(key, keys.envelope(key, generation_offset=1)[0], None) for key in KEYS[::3]],
            commit=False,
        )
        # A committed record on every partition closes the segment holding the aborted one above: the
        # cleaner compacts every segment but the active one.
        rolls = {f"roll-{p}": p for p in range(config["topics.snapshots.partitions"])}
        for roll in rolls:
            envelope, version = keys.envelope(roll)
            committed[roll] = (envelope, version)
        transactions.write([(roll, committed[roll][0], partition) for roll, partition in rolls.items()], commit=True)
        # And aborted again, left in the active segment that the cleaner never touches.
        tail = [(key, keys.envelope(key)[0], None) for key in KEYS[:10]]
        transactions.write(tail, commit=False)
        produced = transactions.produced
    finally:
        transactions.close()

    versions = {key: version for key, (_, version) in committed.items()}
    written = {key: keys.states[key].model_version for key in KEYS}
    assert all(written[key] > versions[key] for key in KEYS), "every key has aborted versions above its committed one"

    # Compacted: the closed segments keep each key's last committed record and nothing aborted; the
    # active segment keeps the aborted tail.
    compacted_at = time.monotonic()
    left = []

    def compacted():
        left[:] = records_left(topic)
        return len(left) == len(committed) + len(tail)

    stack.wait_until(
        compacted,
        90,
        lambda: (
            f"compaction to {len(committed)} committed + {len(tail)} tail records "
            f"of {produced} produced; {len(left)} left"
        ),
    )
    compaction_s = time.monotonic() - compacted_at
    kept, aborted_tail = {(r.key.decode(), r.value) for r in left}, {(key, value) for key, value, _ in tail}
    assert aborted_tail <= kept
    assert kept - aborted_tail == {(key, envelope) for key, (envelope, _) in committed.items()}

    replica = replicas(config, 18311)
    replica.wait_ready()
    keyring = stack.keyring(config)
    served = {}
    for key in committed:
        status, described = replica.http("GET", f"/models/{key}")
        assert status == 200, (key, described)
        served[key] = described["model_version"]
        snapshot = decode(committed[key][0], keyring)
        assert (described["generation"], described["n_learned"], described["key_id"]) == (
            snapshot.generation,
            snapshot.n_learned,
            "local",
        )
        answer = replica.http("POST", "/predict", {"key": key, "features": PROBE})[1]
        assert answer["prediction"] == snapshot.model().predict_proba_one(PROBE)[True], (key, answer)
    assert served == versions
    for ghost in GHOSTS:
        assert replica.http("GET", f"/models/{ghost}")[0] == 404
    # It read the compacted topic: one committed record per key, each applied, nothing rejected.
    assert replica.metric("serving_snapshots_applied_total") == len(committed)
    assert replica.metric("serving_snapshots_rejected_total") == 0
    print(
        f"{len(KEYS)} keys, {produced} records produced ({len(committed)} keys committed), compacted to "
        f"{len(left)} in {compaction_s:.1f}s; versions served {min(versions[k] for k in KEYS)}-"
        f"{max(versions[k] for k in KEYS)}, aborted up to {max(written.values())}"
    )
