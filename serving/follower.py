"""Follows the snapshot and features topics: every partition (or the subset `serving.partitions`
names, the same numbers of both topics) from the earliest offset, read_committed, no consumer group
(every replica sees every record of what it follows); valid snapshots go to the model registry, feature
rows to the feature store.

Every snapshot's signature is verified before anything else is done with it (udfs/signing.py): one
that is unsigned, signed with a key not in `signing.keys` or altered is rejected with reason
`signature`, so a forged huge version or generation never reaches the registry. A signed payload that
names a class outside the allow-list (udfs/safe_pickle.py) is rejected with reason `forbidden`. A
snapshot or feature row that does not decode, has another format version or another feature
schema is rejected: logged once with its key and offset, counted, and what was served stays. While
the broker or a topic is away, the follower retries and the models it has keep serving. Rollback
records are logged and counted by where their model came from (the registry's history or the payload).
A tombstone (a null value: the job expired or deleted the key) drops the key's model or features.
"""

from __future__ import annotations

import logging
import threading
import time

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from serving.feature_store import FeatureStore
from serving.metrics import Counter, Gauge, Histogram
from serving.partitions import SETTING as PARTITIONS_SETTING, KeyPartitions
from serving.registry import ModelRegistry
from udfs.envelope import FORMAT_VERSION, MAGIC, EnvelopeError, EnvelopeSignatureError, ForbiddenPayload, Snapshot, decode
from udfs.feature_records import FeatureRecordError, decode_features
from udfs.signing import Keyring

log = logging.getLogger(__name__)

RETRY_S = 2.0
RECONNECT_BACKOFF_MAX_MS = 1000
LAG_LOOKUP_TIMEOUT_MS = 1000


class TopicMissing(LookupError):
    """A followed topic that does not exist (yet)."""


class PartitioningError(ValueError):
    """Topics a replica cannot follow a subset of: partitions that do not exist, or topics not
    partitioned alike. Not retried: /healthz reports it until the config is fixed."""


def partitions_to_follow(counts: dict[str, int], held: frozenset[int] | None) -> dict[str, list[int]]:
    """The partitions to follow of each topic, given each topic's partition count.

    >>> partitions_to_follow({"snapshots": 4, "features": 4}, frozenset({1, 3}))
    {'snapshots': [1, 3], 'features': [1, 3]}
    >>> partitions_to_follow({"snapshots": 4, "features": 2}, frozenset({1}))
    Traceback (most recent call last):
    ...
    serving.follower.PartitioningError: serving.partitions needs topics partitioned alike, so that a key's model and features are on the same partition number: snapshots has 4 partitions, features 2 (give both the same 'partitions' under topics:)
    """
    if held is None:
        return {topic: list(range(count)) for topic, count in counts.items()}
    if len(set(counts.values())) > 1:
        (first, first_count), *others = counts.items()
        found = ", ".join([f"{first} has {first_count} partitions", *(f"{t} {c}" for t, c in others)])
        raise PartitioningError(f"{PARTITIONS_SETTING} needs topics partitioned alike, so that a key's model and "
                                f"features are on the same partition number: {found} (give both the same "
                                f"'partitions' under topics:)")
    count = next(iter(counts.values()))
    missing = sorted(p for p in held if p >= count)
    if missing:
        raise PartitioningError(f"{PARTITIONS_SETTING}: partition(s) {', '.join(map(str, missing))} do not exist; "
                                f"the topics have {count} partitions, 0 to {count - 1}")
    return {topic: sorted(held) for topic in counts}


class Rejected(ValueError):
    """A snapshot this replica will not serve; `reason` is its label in the rejected-snapshots metric."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def check_snapshot(value: bytes, schema_hash: str, keyring: Keyring) -> Snapshot:
    """The snapshot in a record's value, if its signature verifies and this replica can serve it;
    raises Rejected otherwise.

    The model stays unpickled: most records on a busy topic are older than what is served."""
    try:
        snapshot = decode(value, keyring)
    except EnvelopeSignatureError as e:
        raise Rejected("signature", str(e)) from None
    except EnvelopeError as e:
        # A newer writer's envelope is not corruption; telling them apart shows an upgrade out of order.
        head = bytes(value or b"")[:len(MAGIC) + 1]
        newer = head[:-1] == MAGIC and len(head) > len(MAGIC) and head[-1] > FORMAT_VERSION
        raise Rejected("version" if newer else "corrupt", str(e)) from None
    if snapshot.feature_schema_hash != schema_hash:
        raise Rejected("schema", f"feature schema {snapshot.feature_schema_hash} is not the served {schema_hash}")
    if not isinstance(snapshot.extra, dict):
        raise Rejected("corrupt", f"extra must be an object, got {type(snapshot.extra).__name__}")
    rollback = snapshot.extra.get("rollback")
    if rollback is not None and not is_rollback(rollback, snapshot.model_version):
        raise Rejected("corrupt", f"extra.rollback must be {{from_version, to_version, reason}} with versions "
                                  f"older than v{snapshot.model_version}, got {rollback!r}")
    return snapshot


def is_rollback(rollback, version: int) -> bool:
    """Whether `extra["rollback"]` of a snapshot of `version` says what the registry needs to apply it."""
    if not isinstance(rollback, dict) or "reason" not in rollback:
        return False
    versions = [rollback.get("from_version"), rollback.get("to_version")]
    return all(isinstance(v, int) and not isinstance(v, bool) and v < version for v in versions)


class Follower(threading.Thread):
    def __init__(self, bootstrap_servers: str, snapshot_topic: str, features_topic: str,
                 registry: ModelRegistry, features: FeatureStore, schema_hash: str, freshness_buckets,
                 keyring: Keyring, partitions: KeyPartitions | None = None):
        """`partitions`: the partitions to follow (None: every one); its count is set once known."""
        super().__init__(name="topic-follower", daemon=True)
        self.bootstrap_servers = bootstrap_servers
        self.snapshot_topic, self.features_topic = snapshot_topic, features_topic
        self.registry, self.features, self.schema_hash = registry, features, schema_hash
        self.keyring = keyring
        self.partitions = partitions or KeyPartitions(None, snapshot_topic)
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self.error: str | None = None
        self.applied = Counter("serving_snapshots_applied_total", "Snapshots now served.")
        self.stale = Counter("serving_snapshots_stale_total", "Snapshots not newer than the version served.")
        self.rejected = Counter("serving_snapshots_rejected_total", "Snapshots refused, by reason.", labels=("reason",))
        self.rollbacks = Counter("serving_rollbacks_total", "Rollback records applied, by where their model came from.",
                                 labels=("source",))
        self.lag = Gauge("serving_consumer_lag", "Records not yet read, over the followed partitions of both topics.")
        self.followed = Gauge("serving_partitions_followed",
                              "Partitions of the snapshot topic followed here (all unless serving.partitions).")
        self.models = Gauge("serving_models", "Keys with a served model.")
        self.feature_rows = Gauge("serving_feature_rows", "Keys with stored features.")
        self.removed = Counter("serving_keys_removed_total",
                               "Tombstones that dropped a served model or stored features, by topic.", labels=("topic",))
        self.rejected_features = Counter("serving_feature_rows_rejected_total", "Feature rows refused, by reason.",
                                         labels=("reason",))
        self.freshness = Histogram("serving_freshness_seconds",
                                   "From the end of a model's last window to it being servable here.", freshness_buckets)

    def metrics(self):
        return [self.applied, self.stale, self.rejected, self.rollbacks, self.lag, self.followed, self.models,
                self.freshness, self.feature_rows, self.rejected_features, self.removed]

    def run(self):
        while not self.stopping.is_set():
            try:
                return self.follow()
            except (KafkaError, TopicMissing) as e:
                # A broker that restarts or topics not created yet: keep serving what is served, and retry.
                # Reading again from the start is harmless: versions already served are skipped.
                log.warning("cannot follow the topics, retrying in %gs: %s", RETRY_S, e)
                self.stopping.wait(RETRY_S)
            except Exception as e:
                # A replica that stopped following serves ever older models; /healthz reports it.
                self.error = f"{type(e).__name__}: {e}"
                log.exception("stopped following the topics")
                return

    def follow(self):
        # Offsets out of range (records deleted while behind) restart from the earliest: skipping to the
        # latest would miss the newest version of every key not written since.
        # After a broker outage, reconnect within a second of its return (kafka-python's backoff otherwise
        # grows to 30 s between attempts, and the replica would serve old models that long).
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap_servers, enable_auto_commit=False,
                                 isolation_level="read_committed", group_id=None, auto_offset_reset="earliest",
                                 reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS)
        try:
            counts = {}
            for topic in (self.snapshot_topic, self.features_topic):
                found = consumer.partitions_for_topic(topic) or set()
                if not found:
                    raise TopicMissing(f"topic {topic!r} does not exist")
                counts[topic] = len(found)
            followed = partitions_to_follow(counts, self.partitions.held)
            partitions = [TopicPartition(topic, p) for topic, numbers in followed.items() for p in numbers]
            # Where a key lives is its partition among all of the topic's, followed or not.
            self.partitions.count = counts[self.snapshot_topic]
            self.followed.set(len(followed[self.snapshot_topic]))
            consumer.assign(partitions)
            consumer.seek_to_beginning(*partitions)
            # Ready once caught up with what was committed when the replica started.
            start_ends = consumer.end_offsets(partitions)
            next_lag_check = 0.0
            while not self.stopping.is_set():
                for tp, records in consumer.poll(timeout_ms=200).items():
                    handle = self.handle_snapshot if tp.topic == self.snapshot_topic else self.handle_features
                    for record in records:
                        handle(record)
                self.features.advance()  # the rows of a new window just read are all in place
                if time.monotonic() >= next_lag_check:
                    next_lag_check = time.monotonic() + 0.5
                    positions = {tp: consumer.position(tp) for tp in partitions}
                    if not self.ready.is_set() and all(positions[tp] >= start_ends[tp] for tp in partitions):
                        self.ready.set()
                        log.info("caught up: %d models, %d feature rows", len(self.registry), len(self.features))
                    try:
                        # Bounded: while the broker is away, a lag lookup must not hold up the polling.
                        ends = consumer.end_offsets(partitions, timeout_ms=LAG_LOOKUP_TIMEOUT_MS)
                    except KafkaError as e:
                        # The broker being away is no reason to stop serving; poll() reconnects.
                        log.warning("consumer lag unknown: %s", e)
                        continue
                    self.lag.set(sum(max(0, ends[tp] - positions[tp]) for tp in partitions))
        finally:
            consumer.close()

    def handle_snapshot(self, record) -> None:
        if record.value is None and record.key is not None:
            if self.registry.remove(record.key.decode(errors="replace")):
                self.removed.inc(topic="snapshots")
                self.models.set(len(self.registry))
            return
        try:
            snapshot = check_snapshot(record.value, self.schema_hash, self.keyring)
        except Rejected as e:
            return self.reject(record, e.reason, e)
        current = self.registry.get(snapshot.key)
        if current is not None and current.snapshot.order >= snapshot.order:
            self.stale.inc()
            return
        now = time.time()
        try:
            served = self.registry.offer(snapshot, applied_at=now)
        except ForbiddenPayload as e:
            return self.reject(record, "forbidden", e)
        except EnvelopeError as e:
            return self.reject(record, "corrupt", e)
        if served is None:
            return
        self.applied.inc()
        self.models.set(len(self.registry))
        if self.ready.is_set():  # while catching up, the age of history is no measure of freshness
            self.freshness.observe(max(0.0, now - snapshot.window_end_ms / 1000))
        if "rollback" in snapshot.extra:
            rollback = served.rollback
            self.rollbacks.inc(source=rollback.source)
            log.info("key %r rolled back: v%d serves v%d's model (from %s) instead of v%d: %s", snapshot.key,
                     rollback.version, rollback.to_version, rollback.source, rollback.from_version, rollback.reason)

    def reject(self, record, reason: str, error: Exception) -> None:
        self.rejected.inc(reason=reason)
        key = record.key.decode(errors="replace") if record.key else None
        log.warning("rejected snapshot of key %r at partition %d offset %d: %s",
                    key, record.partition, record.offset, error)

    def handle_features(self, record) -> None:
        if record.value is None and record.key is not None:
            if self.features.remove(record.key.decode(errors="replace")):
                self.removed.inc(topic="features")
                self.feature_rows.set(len(self.features))
            return
        try:
            row = decode_features(record.value)
        except FeatureRecordError as e:
            self.rejected_features.inc(reason="corrupt")
            log.warning("rejected feature row at partition %d offset %d: %s", record.partition, record.offset, e)
            return
        if row.feature_schema_hash != self.schema_hash:
            self.rejected_features.inc(reason="schema")
            log.warning("rejected feature row of key %r at partition %d offset %d: feature schema %s is not %s",
                        row.key, record.partition, record.offset, row.feature_schema_hash, self.schema_hash)
            return
        if self.features.offer(row, received_at=time.time()):
            self.feature_rows.set(len(self.features))
